"""The mel forward model as one object: :class:`MelOperator`.

Every stage, optimiser and training task that needs the filterbank, the bins it covers, its
pseudo-inverse, the power law with the config's epsilon, a log-mel distance or Whisper's extra
STFT frame takes them from here, so the forward model is written once.

Shapes: power or magnitude spectra ``(..., n_freqs, frames)``, mels ``(..., n_mels, frames)``
(mels-first, the library's layout); the ``*_frames_first`` helpers take ``(..., frames, n_freqs)``
as the phase stages hold them.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from .config import MelConfig
from .dsp import filterbank_key, magnitude, mel_basis, mel_basis_np

#: Singular values of the filterbank below this fraction of the largest are treated as zero by
#: the pseudo-inverse. Filterbanks with more mels than their FFT resolves (Whisper's 128 mels or
#: torchaudio's defaults at n_fft 400) have singular values of ~1e-17 relative: numerically zero,
#: but whether LAPACK puts them just above or below a machine-epsilon cutoff differs between
#: builds, and one kept gives a pseudo-inverse with entries of ~1e16. Well-posed filterbanks
#: have none below 0.08.
PINV_RCOND = 1e-4


@functools.cache
def _blas_controller() -> object | None:
    """threadpoolctl's view of the process's thread pools (its scan of the loaded libraries
    costs 5-8 ms, so it is made once), or ``None`` without ``threadpoolctl``."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS/LAPACK on one thread inside, restored on exit (when ``threadpoolctl`` is
    installed; otherwise nothing changes).

    The SVDs behind the operator are of small matrices (``n_mels x n_freqs``): threading gains
    nothing there, and where other work holds the cores, OpenBLAS's threads wait on each other
    through every step of the decomposition (measured on a shared 2-core machine at a load of
    7-12: 3-15 ms on one thread, 66 ms to 2.3 s on two). On one thread no OpenBLAS worker is
    woken either, which would spin for ~0.1 s afterwards beside torch's threads (see
    :func:`melinvert.dsp.busy_threads`). threadpoolctl's scan of the loaded libraries (5-16 ms
    beside torch) is made once per process, when the first filterbank is decomposed.
    """
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):  # type: ignore[attr-defined]
        yield


@functools.lru_cache(maxsize=32)
def _svd_np(key: tuple) -> tuple[np.ndarray, float]:
    """``(pseudo-inverse (n_freqs, n_mels), largest singular value)`` of the float64
    filterbank of ``key``, from one SVD."""
    from .dsp import _mel_basis_np

    fb = np.array(_mel_basis_np(*key))
    with one_blas_thread():  # (the product too: a threaded one would wake OpenBLAS's pool)
        u, s, vt = np.linalg.svd(fb, full_matrices=False)
        keep = s > PINV_RCOND * s.max()
        out = (vt[keep].T / s[keep]) @ u[:, keep].T
    out.flags.writeable = False
    return out, float(s.max())


def pinv_np(config: MelConfig) -> np.ndarray:
    """Pseudo-inverse of the float64 filterbank, ``(n_freqs, n_mels)`` (read-only, cached)."""
    return _svd_np(filterbank_key(config))[0]


class MelOperator(torch.nn.Module):
    """The mel forward model of one config, in one dtype, on one device.

    Buffers (so ``.to(device)`` moves them): ``fb`` ``(n_mels, n_freqs)``; ``fb_cover``
    ``(n_mels, F')`` and ``fb_cover_t`` ``(F', n_mels)``, the filterbank on the bins ``[lo, hi)``
    some filter covers; ``gain_map`` ``(n_mels, F')``, the filterbank normalised so each covered
    bin's weights sum to one; ``pinv`` ``(n_freqs, n_mels)``, the pseudo-inverse.

    Use :func:`mel_operator` to get the cached instance.
    """

    fb: torch.Tensor
    fb_cover: torch.Tensor
    fb_cover_t: torch.Tensor
    gain_map: torch.Tensor
    pinv: torch.Tensor

    def __init__(
        self, config: MelConfig, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ):
        super().__init__()
        self.config = config
        fb_np = mel_basis_np(config)
        active = np.flatnonzero(fb_np.sum(axis=0) > 0)
        self.lo, self.hi = int(active[0]), int(active[-1]) + 1
        fb = mel_basis(config, dtype=dtype, device=device)
        fbc = fb[:, self.lo : self.hi]
        colsum = fb.sum(0)
        self.register_buffer("fb", fb)
        self.register_buffer("fb_cover", fbc.contiguous())
        self.register_buffer("fb_cover_t", fbc.T.contiguous())
        self.register_buffer("gain_map", (fbc / colsum[self.lo : self.hi].clamp_min(1e-30)).contiguous())
        self.register_buffer("pinv", torch.as_tensor(np.array(pinv_np(config)), dtype=dtype, device=device))
        self._csr: dict[str, torch.Tensor] = {}  # CSR copies, by name (see _csr_of)
        #: FISTA step ``1 / ||fb_cover||_2^2`` (from the float64 filterbank: the columns no
        #: filter covers are zero, so its largest singular value is the whole filterbank's)
        self.step = 1.0 / _svd_np(filterbank_key(config))[1] ** 2

    # ------------------------------------------------------------------ forward model
    @property
    def power(self) -> float:
        return self.config.power

    def forward(self, power_spec: torch.Tensor) -> torch.Tensor:
        """The mel of a power-law spectrum ``|X|^power`` ``(..., n_freqs, T)`` -> ``(..., n_mels, T)``."""
        return torch.matmul(self.fb, power_spec)

    def adjoint(self, mel: torch.Tensor) -> torch.Tensor:
        """``fb^T @ mel``: ``(..., n_mels, T)`` -> ``(..., n_freqs, T)``."""
        return torch.matmul(self.fb.T, mel)

    def spec_power(self, spec: torch.Tensor, *, extra_eps: float = 0.0) -> torch.Tensor:
        """``|spec|^power`` of a complex spectrum with the config's epsilon (:func:`dsp.power_law`)."""
        return magnitude(spec, self.config, extra_eps=extra_eps)

    def to_power(self, mag: torch.Tensor) -> torch.Tensor:
        """``|X|`` -> ``|X|^power`` (no epsilon)."""
        p = self.config.power
        return mag if p == 1 else mag.square() if p == 2 else mag.pow(p)

    def to_magnitude(self, power_est: torch.Tensor) -> torch.Tensor:
        """``|X|^power`` -> ``|X|`` (negative estimates clipped for powers other than 1)."""
        if self.config.power == 1:
            return power_est
        return power_est.clamp_min(0.0).pow(1.0 / self.config.power)

    def cover_forward(self, power_cover: torch.Tensor) -> torch.Tensor:
        """``fb_cover @ x``: ``(B, F', T)`` -> ``(B, n_mels, T)`` (see :meth:`_cover_product`)."""
        return self._cover_product(power_cover, transpose=False)

    def cover_adjoint(self, mel: torch.Tensor) -> torch.Tensor:
        """``fb_cover^T @ r``: ``(B, n_mels, T)`` -> ``(B, F', T)`` (see :meth:`_cover_product`)."""
        return self._cover_product(mel, transpose=True)

    def _sparse(self, x: torch.Tensor) -> bool:
        """Whether a product with ``x`` goes through a CSR copy: on the CPU, ``(B, ., .)``,
        without autograd."""
        return x.device.type == "cpu" and x.dim() == 3 and not (torch.is_grad_enabled() and x.requires_grad)

    def _csr_of(self, name: str) -> torch.Tensor:
        """CSR copy of ``fb_cover`` (``"fb"``), its transpose (``"fb_t"``) or ``gain_map``'s
        transpose (``"gain_t"``), made once (this operator's dtype and device are fixed)."""
        csr = self._csr.get(name)
        if csr is None:
            dense = {"fb": self.fb_cover, "fb_t": self.fb_cover_t, "gain_t": self.gain_map.t()}[name]
            with warnings.catch_warnings():  # "sparse CSR support is in beta": the product is stable
                warnings.simplefilter("ignore", UserWarning)
                csr = self._csr[name] = dense.contiguous().to_sparse_csr()
        return csr

    def _cover_product(self, x: torch.Tensor, *, transpose: bool) -> torch.Tensor:
        """The covered filterbank (or its transpose) times ``x`` ``(B, rows, T)``, mels first.

        On the CPU without autograd, through a CSR copy of the filterbank: a triangular
        filterbank has at most two filters over any bin (hifigan-22k-80: 727 of 29680 entries
        are non-zero), and the sparse product skips the zeros the dense one multiplies (measured
        9x faster for ``fb @ x`` and 3x for ``fb^T @ r`` on 10 s, one thread). Each output
        element is one fixed-order sum over its row's non-zeros, so a batch equals its items.
        Elsewhere the dense product.
        """
        if not self._sparse(x):
            return (self.fb_cover_t if transpose else self.fb_cover) @ x
        b, _, t = x.shape
        flat = x[0] if b == 1 else x.transpose(0, 1).reshape(x.shape[1], b * t)
        out = torch.sparse.mm(self._csr_of("fb_t" if transpose else "fb"), flat)
        return out[None] if b == 1 else out.reshape(-1, b, t).transpose(0, 1)

    def _frames_first_product(self, x: torch.Tensor, name: str, dense: torch.Tensor) -> torch.Tensor:
        """``x @ dense`` for frames-first ``x`` ``(B, T, K)``: through the CSR copy ``name`` of
        ``dense^T`` where :meth:`_sparse` (2-3x faster for the mel re-fit's two products on
        10 s, one thread; a batch equals its items as in :meth:`_cover_product`)."""
        if not self._sparse(x):
            return x @ dense
        b, t, k = x.shape
        flat = x.reshape(b * t, k).t().contiguous()  # (K, B T): sparse.mm reads it fastest so
        return torch.sparse.mm(self._csr_of(name), flat).t().reshape(b, t, -1)

    def cover_mel_frames_first(self, power_cover: torch.Tensor) -> torch.Tensor:
        """Mel ``(..., T, n_mels)`` of ``|X|^power`` on the covered bins ``(..., T, F')``."""
        return self._frames_first_product(power_cover, "fb", self.fb_cover_t)

    def spread_frames_first(self, per_mel: torch.Tensor) -> torch.Tensor:
        """``per_mel @ gain_map``: ``(..., T, n_mels)`` -> ``(..., T, F')``, each covered bin
        the weighted mean of its filters' values (the weights of a bin sum to one)."""
        return self._frames_first_product(per_mel, "gain_t", self.gain_map)

    # ------------------------------------------------------------------ distances
    @staticmethod
    def log_error(est: torch.Tensor, log_target: torch.Tensor, delta: torch.Tensor | float) -> torch.Tensor:
        """``ln(est + delta) - log_target`` (``log_target = ln(target + delta)``)."""
        return torch.log(est + delta) - log_target

    def log_distance(
        self, est: torch.Tensor, target: torch.Tensor, delta: torch.Tensor | float, *, order: int = 1
    ) -> torch.Tensor:
        """Mean ``|ln(est + delta) - ln(target + delta)|^order`` over the last two dims, per item."""
        err = self.log_error(est, torch.log(target + delta), delta)
        return (err.abs() if order == 1 else err.square()).mean(dim=(-2, -1))

    # ------------------------------------------------------------------ frames
    def stft_frames(self, mel_frames: int) -> int:
        """STFT frames behind ``mel_frames`` mel frames (Whisper drops the last STFT frame)."""
        return mel_frames + (1 if self.config.drop_last_frame else 0)

    def extend_frames(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Mel-frame data -> STFT-frame data: Whisper's dropped frame is the last one repeated."""
        if not self.config.drop_last_frame:
            return x
        return torch.cat([x, x.narrow(dim, x.shape[dim] - 1, 1)], dim=dim)

    def mel_frames_of(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """STFT-frame data -> the frames the mel keeps (drops Whisper's last)."""
        if not self.config.drop_last_frame:
            return x
        return x.narrow(dim, 0, x.shape[dim] - 1)


@functools.lru_cache(maxsize=64)
def _cached(config: MelConfig, dtype: torch.dtype, device: torch.device) -> MelOperator:
    return MelOperator(config, dtype=dtype, device=device)


def mel_operator(
    config: MelConfig, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> MelOperator:
    """The cached :class:`MelOperator` of ``(config, dtype, device)`` (keyed on the whole config)."""
    return _cached(config, dtype, torch.device(device))
