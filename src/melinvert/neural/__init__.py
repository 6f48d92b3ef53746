"""Learned stages: models users train on their own mels, and the weights that ship.

- ``refiner`` (stage 1): the pseudo-inverse magnitude corrected by a convolutional network
  (:class:`~melinvert.neural.models.Refiner`); composes with any phase stage, e.g.
  ``refiner+pghi+fgla``. Weights for ``hifigan-22k-80`` ship with the package.
- ``degli`` (stage 2): Deep Griffin-Lim iteration (:class:`~melinvert.neural.models.DeGLINet`).
- ``cnn_vocoder`` (a whole pipeline): mel -> waveform by convolutions
  (:class:`~melinvert.neural.models.CNNVocoder`).
- ``learned``: the best learned composition measured (see ``docs/models/``).

``melinvert train MODEL AUDIO... -o RUN`` trains any of them (:mod:`melinvert.neural.train`);
``invert(..., model=RUN)`` uses the result. Importing this package registers the stages in
the pipeline's registries.
"""

from __future__ import annotations

from ..magnitude import MAGNITUDE_METHODS
from ..phase import PHASE_METHODS
from ..pipeline import PIPELINES, Plan
from .checkpoint import Checkpoint, load_checkpoint, read_record, save_checkpoint, shipped_path
from .models import MODEL_CLASSES, build_model
from .stages import VOCODERS, bind, cnn_vocoder, degli, refiner_magnitude

__all__ = [
    "MODEL_CLASSES",
    "VOCODERS",
    "Checkpoint",
    "bind",
    "build_model",
    "cnn_vocoder",
    "degli",
    "load_checkpoint",
    "read_record",
    "refiner_magnitude",
    "save_checkpoint",
    "shipped_path",
]

MAGNITUDE_METHODS["refiner"] = (
    refiner_magnitude,
    "learned: pseudo-inverse corrected by a small CNN (shipped for hifigan-22k-80; model= for others)",
)
PHASE_METHODS["degli"] = (
    degli,
    False,
    "learned: Deep Griffin-Lim iteration (Masuyama et al. 2021); needs trained weights (model=)",
)
PIPELINES["learned"] = (
    Plan("refiner", "pghi", "mfgla", 300, optimizer="wave_lbfgs", opt_iter=20),
    "learned refiner magnitude, PGHI phase, 300 mel-refitted fast Griffin-Lim iterations, then 20 "
    "waveform L-BFGS iterations (the best learned composition measured: docs/models/)",
)
PIPELINES["cnn_vocoder"] = (Plan(phase=None, n_iter=0, vocoder="cnn_vocoder"), VOCODERS["cnn_vocoder"][1])
