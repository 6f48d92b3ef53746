"""Learned stages: models users train on their own mels, and the weights that ship.

- ``refiner`` (stage 1): the pseudo-inverse magnitude corrected by a convolutional network
  (:class:`~melinvert.neural.models.Refiner`); composes with any phase stage, e.g.
  ``refiner+pghi+fgla``. Weights for ``hifigan-22k-80`` ship with the package.
- ``degli`` (stage 2): Deep Griffin-Lim iteration (:class:`~melinvert.neural.models.DeGLINet`).
- ``cnn_vocoder`` (a whole pipeline): mel -> waveform by convolutions
  (:class:`~melinvert.neural.models.CNNVocoder`).
- ``learned``: the best learned composition measured (see ``docs/models/``).

``melinvert train MODEL AUDIO... -o RUN`` trains any of them (:mod:`melinvert.neural.train`);
``invert(..., model=RUN)`` uses the result. :mod:`melinvert.neural.stages` registers the
stages and the ``learned``/``cnn_vocoder`` pipelines in :mod:`melinvert.registry`.
"""

from __future__ import annotations

from .checkpoint import Checkpoint, load_checkpoint, read_record, save_checkpoint, shipped_path
from .models import MODEL_CLASSES, build_model
from .stages import cnn_vocoder, degli, refiner_magnitude, resolve

__all__ = [
    "MODEL_CLASSES",
    "Checkpoint",
    "build_model",
    "cnn_vocoder",
    "degli",
    "load_checkpoint",
    "read_record",
    "refiner_magnitude",
    "resolve",
    "save_checkpoint",
    "shipped_path",
]
