"""Direct optimisation against the mel itself (stage 3: refine a waveform so its mel fits).

Every optimiser has the calling shape::

    optimizer(mel, config, start, *, n_iter, callback=None, known=None) -> audio

``mel`` : torch.Tensor [shape=(B, n_mels, frames)]
    Target LINEAR mel (the config's compression already undone).
``start`` : torch.Tensor [shape=(B, samples)]
    Starting waveform (the cascade's output, or noise).
``known`` : torch.Tensor [shape=(B, K)], optional
    Samples at the start of the block that are fixed (the previous block's output).
returns : torch.Tensor [shape=(B, samples)]
    The refined waveform; never worse than ``start`` on the optimiser's own loss.

Optimisers are registered in :data:`OPTIMIZERS` (name -> (function, one line)); the pipeline
composes them after the phase stage, e.g. ``"default+wave_lbfgs"`` style compositions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

OPTIMIZERS: dict[str, tuple[Callable[..., torch.Tensor], str]] = {}
