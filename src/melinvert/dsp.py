"""Signal processing core: windows, STFT/iSTFT, mel filterbanks and the forward mel transform.

Everything here is torch, works on any leading batch dimensions and any device, and never
touches files or the terminal. Shapes: audio ``(..., samples)``, complex STFT
``(..., n_freqs, frames)``, mel ``(..., n_mels, frames)``.

The STFT here and :func:`istft` are an exact pair for every padding convention a
:class:`~melinvert.config.MelConfig` can name (centred, HiFi-GAN's half-overlap reflect pad,
none): ``istft(stft(x)) == x`` to rounding wherever the frames cover the signal.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import MelConfig, resolve_config
from .errors import MelinvertError, check

# ---------------------------------------------------------------------- devices and arrays


def resolve_device(device: str | torch.device | None, like: torch.Tensor | None = None) -> torch.device:
    """``None``: the device of ``like`` (CPU for numpy input); ``"auto"``: CUDA if present."""
    if device is None:
        return like.device if like is not None else torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise MelinvertError(f"device={device!r} is not a device name (auto, cpu, cuda, cuda:N)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MelinvertError(f"device={device!r} asked for, but no CUDA device is available")
    return dev


_THREADS_LOCK = threading.Lock()
_threads_cut: list[int] = []  # the thread count to restore, once per caller inside (nested, concurrent)


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (all cores; idle and I/O wait
    left out), from ``/proc/stat``; ``None`` where that is not readable (not Linux)."""
    try:
        with open("/proc/stat", "rb") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


#: Shortest interval over which :func:`free_cores` measures the others' use of the CPUs
#: (``/proc/stat`` counts in 10 ms ticks); a call sooner reuses the last verdict.
LOOK_SECONDS = 0.1
_LOOK_LOCK = threading.Lock()
_clock = time.monotonic
_own_seconds = time.process_time  # this process's CPU time, all its threads
#: (monotonic time, machine's busy seconds, this process's CPU seconds) at the last look, and
#: the verdict then (``None`` before any)
_look: list = [_clock(), _busy_seconds(), _own_seconds(), None]


def free_cores() -> int:
    """Cores no other process is using: how many threads a parallel operation can run on
    without one of them waiting for a core (1 to ``os.cpu_count()``).

    Measured, on Linux, as the CPU time the machine spent busy since the last look (at least
    :data:`LOOK_SECONDS` ago; the first look is the import of this module) less this process's
    own, per second: a core's worth of other work takes a core, half a core's worth or less is
    left alone. Sooner than that, the last verdict stands; before any, or without
    ``/proc/stat``, the 1-minute load average decides (above the cores: one core each for the
    excess). This process's own threads (torch's, numpy's) never count against it.
    """
    n = os.cpu_count() or 1
    now, busy, own = _clock(), _busy_seconds(), _own_seconds()
    with _LOOK_LOCK:
        t0, busy0, own0, verdict = _look
        if busy is None or busy0 is None:
            verdict = None
            _look[:] = [now, busy, own, None]  # (a mark to measure from, where there now is one)
        elif now - t0 >= LOOK_SECONDS:
            others = max(0.0, (busy - busy0) - (own - own0)) / (now - t0)  # in cores
            verdict = max(1, n - math.ceil(others - 0.5))
            _look[:] = [now, busy, own, verdict]
        if verdict is None:
            load = os.getloadavg()[0]
            verdict = n if load <= n else max(1, n - math.ceil(load - n))
    return verdict


def _thread_states() -> dict[int, str]:
    """The state letter (``R`` running, ``S`` sleeping, ...) of each of this process's threads
    but the calling one, from ``/proc/self/task`` (Linux; ``{}`` elsewhere)."""
    me = threading.get_native_id()
    out = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for t in tids:
        if int(t) == me:
            continue
        try:
            with open(f"/proc/self/task/{t}/stat", "rb") as f:
                st = f.read()
        except OSError:  # (the thread ended meanwhile)
            continue
        i = st.rfind(b")") + 2  # the state follows the name, which may hold spaces and ")"
        out[int(t)] = st[i : i + 1].decode("ascii", "replace")
    return out


_POOLS: dict[int, frozenset[int]] = {}  #: torch's thread count -> its intra-op pool's threads


def _torch_pool() -> frozenset[int]:
    """The threads of torch's intra-op pool at its present thread count: those a small
    parallel operation starts or wakes (learnt once per count; ~0.5 ms)."""
    n = torch.get_num_threads()
    pool = _POOLS.get(n)
    if pool is None:
        before = _thread_states()
        if "R" in before.values():  # torch's pool may be spinning from work just done: it
            time.sleep(0.01)  # sleeps within a few ms, other spinners (OpenBLAS's) do not
            before = _thread_states()
        torch.zeros(n * 65536).add_(1.0)  # one chunk per thread (torch's grain: 32768 elements)
        after = _thread_states()
        pool = _POOLS[n] = frozenset(
            t for t, st in after.items() if t not in before or (st == "R" and before[t] != "R")
        )
    return pool


def busy_threads() -> int:
    """Threads of this process running now besides the caller and torch's pool: another
    Python thread at work, or a BLAS pool spinning (OpenBLAS's worker threads, behind numpy
    and scipy, spin for ~0.1 s after each threaded matrix product before they sleep; a torch
    operation in that time waits at every barrier for the thread that shares their core: a
    process's first ``fast`` call right after librosa's ``mel_to_audio`` measured 190 ms on two
    threads against 64 ms with OpenBLAS on one)."""
    pool = _torch_pool()
    return sum(1 for t, st in _thread_states().items() if st == "R" and t not in pool)


@contextlib.contextmanager
def threads_for_load(device: torch.device) -> Iterator[None]:
    """Inside: torch's intra-op threads cut to the cores other processes leave free
    (:func:`free_cores`) and other threads of this process do not hold now
    (:func:`busy_threads`); restored on exit.

    Where other work holds a core, one of torch's threads shares it, and every parallel
    operation waits at its barrier for the one that is descheduled: a ``default`` inversion
    measured 10-20x slower with two threads than with one on a shared 2-core machine at a load
    of 7-12, and 3x slower beside one other busy process. Threads on free cores do not wait. On
    an idle machine, and for other devices, nothing changes. Concurrent and nested callers
    restore the count the first of them found, when the last one leaves. The thread count
    changes float rounding (parallel sums): set ``MELINVERT_LOAD_AWARE_THREADS=0`` to keep
    torch's count whatever the load, for outputs that must not depend on other processes.
    """
    with _THREADS_LOCK:
        n = _threads_cut[0] if _threads_cut else torch.get_num_threads()
        use = n
        if _threads_cut:  # an outer or concurrent caller has cut the count: it stands
            use = torch.get_num_threads()
        elif device.type == "cpu" and n > 1 and os.environ.get("MELINVERT_LOAD_AWARE_THREADS", "1") != "0":
            use = max(1, min(n, free_cores(), n - busy_threads()))
        cut = use < n
        if cut:
            _threads_cut.append(n)
            torch.set_num_threads(use)
    try:
        yield
    finally:
        if cut:
            with _THREADS_LOCK:
                _threads_cut.pop()
                if not _threads_cut:
                    torch.set_num_threads(n)


#: Allocations below this many bytes come from the heap, not fresh ``mmap`` pages.
KEEP_MMAP_THRESHOLD = 64 << 20
#: Free memory the heap keeps at its top instead of giving it back to the system.
KEEP_TRIM_THRESHOLD = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc's ``malloc`` reuse the memory an inversion frees (once per process, Linux).

    Every Griffin-Lim iteration allocates and frees spectra of megabytes. By default glibc
    serves such blocks with fresh ``mmap`` pages, or trims them off the heap when freed, so each
    call touches new pages again: a 10 s ``fast`` inversion took 6,000-15,000 minor page faults
    per call (15-30 ms of an 80 ms call on the 2-core VM measured) and 28,000 on the first.
    With blocks under :data:`KEEP_MMAP_THRESHOLD` from the heap and up to
    :data:`KEEP_TRIM_THRESHOLD` of free heap kept, later calls take a few hundred. The process
    then holds up to that much freed memory for reuse. ``MELINVERT_KEEP_MEMORY=0`` leaves
    ``malloc`` as it is. Returns whether the setting was made (now or before).
    """
    if os.environ.get("MELINVERT_KEEP_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, another libc): nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, KEEP_MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, KEEP_TRIM_THRESHOLD)
    )


def from_numpy_readonly(arr: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy`` without copying, also for read-only arrays (memory-mapped files).

    melinvert never writes into input tensors, so torch's warning about read-only memory
    does not apply.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(arr)


def as_tensor(
    x: Any, *, name: str, device: str | torch.device | None = None
) -> tuple[torch.Tensor, bool, torch.dtype]:
    """Validate a float array and return ``(tensor, was_numpy, dtype)``.

    numpy float32/float64 and torch floating tensors are accepted; integers, complex values,
    NaN or Inf are a :class:`MelinvertError` naming ``name``.
    """
    if isinstance(x, torch.Tensor):
        check(
            x.is_floating_point(),
            f"{name} must be a floating-point tensor, got dtype {str(x.dtype).replace('torch.', '')}",
        )
        t = x if x.dtype in (torch.float32, torch.float64) else x.float()
        was_numpy = False
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise MelinvertError(f"{name} must be a numpy array or torch tensor: {e}") from None
        check(
            arr.dtype.kind == "f",
            f"{name} must be a floating-point array, got dtype {arr.dtype}"
            + (" (integer PCM: divide by 32768 for 16-bit)" if arr.dtype.kind in "iu" else ""),
        )
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float32)
        t = from_numpy_readonly(np.ascontiguousarray(arr))
        was_numpy = True
    dtype = t.dtype
    check(t.numel() > 0, f"{name} is empty (shape {tuple(t.shape)})")
    check(bool(torch.isfinite(t).all()), f"{name} contains NaN or Inf")
    t = t.to(resolve_device(device, t if not was_numpy else None))
    return t, was_numpy, dtype


def to_output(t: torch.Tensor, was_numpy: bool, dtype: torch.dtype) -> Any:
    """Return ``t`` in the caller's kind: numpy (on the CPU) or torch, in ``dtype``."""
    t = t.to(dtype)
    if was_numpy:
        return t.detach().cpu().numpy()
    return t


# ---------------------------------------------------------------------- windows


def _window_np(name: str, length: int) -> np.ndarray:
    n = np.arange(length, dtype=np.float64)
    if name == "rect":
        return np.ones(length)
    x = 2.0 * np.pi * n / length  # periodic ("fftbins=True")
    if name == "hann":
        return 0.5 - 0.5 * np.cos(x)
    if name == "hamming":
        return 0.54 - 0.46 * np.cos(x)
    if name == "blackman":
        return 0.42 - 0.5 * np.cos(x) + 0.08 * np.cos(2 * x)
    raise MelinvertError(f"unknown window {name!r}")  # pragma: no cover - validated by MelConfig


@functools.lru_cache(maxsize=64)
def _window_cached(
    name: str, win_length: int, n_fft: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    w = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    w[left : left + win_length] = _window_np(name, win_length)
    return torch.as_tensor(w, dtype=dtype, device=device)


def window(
    config: MelConfig, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The analysis window, zero-padded in the centre to ``n_fft``: shape ``(n_fft,)``.

    Periodic, as ``scipy.signal.get_window(name, win_length, fftbins=True)`` and
    ``torch.hann_window(win_length)``; cached on every argument.
    """
    return _window_cached(config.window, config.win_length, config.n_fft, dtype, torch.device(device))


# ---------------------------------------------------------------------- mel filterbank


def hz_to_mel(freqs: np.ndarray | float, scale: str = "slaney") -> np.ndarray:
    """Hz -> mel on the Slaney (Auditory Toolbox) or HTK scale, float64."""
    f = np.asarray(freqs, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(
        f >= min_log_hz, min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, f / f_sp
    )


def mel_to_hz(mels: np.ndarray | float, scale: str = "slaney") -> np.ndarray:
    """mel -> Hz, the inverse of :func:`hz_to_mel`, float64."""
    m = np.asarray(mels, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_band_edges(n_mels: int, fmin: float, fmax: float, scale: str = "slaney") -> np.ndarray:
    """The filterbank's ``n_mels + 2`` band edges in Hz, float64: filter ``k`` rises from edge
    ``k`` to its centre, edge ``k + 1``, and falls to edge ``k + 2`` (equally spaced in mel)."""
    return mel_to_hz(np.linspace(hz_to_mel(fmin, scale), hz_to_mel(fmax, scale), n_mels + 2), scale)


@functools.lru_cache(maxsize=32)
def _mel_basis_np(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float, scale: str, norm: str | None
) -> np.ndarray:
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    hz_pts = mel_band_edges(n_mels, fmin, fmax, scale)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    basis = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        basis *= (2.0 / (hz_pts[2 : n_mels + 2] - hz_pts[:n_mels]))[:, None]
    basis.flags.writeable = False
    return basis


def filterbank_key(config: MelConfig) -> tuple:
    """Every parameter that shapes the filterbank: the one cache key of the filterbank, its
    pseudo-inverse and the operator built on them."""
    return (
        config.sample_rate,
        config.n_fft,
        config.n_mels,
        float(config.fmin),
        float(config.fmax_hz),
        config.mel_scale,
        config.mel_norm,
    )


def mel_basis_np(config: MelConfig) -> np.ndarray:
    """The mel filterbank in float64 numpy, shape ``(n_mels, n_freqs)`` (read-only, cached)."""
    return _mel_basis_np(*filterbank_key(config))


@functools.lru_cache(maxsize=64)
def _mel_basis_torch(key: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.array(_mel_basis_np(*key)), dtype=dtype, device=device)


def mel_basis(
    config: MelConfig, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The mel filterbank as a torch tensor ``(n_mels, n_freqs)``.

    Cached on every parameter that shapes it (rate, n_fft, n_mels, fmin, fmax, scale, norm),
    the dtype and the device, so a change in any of them builds a new one.
    """
    return _mel_basis_torch(filterbank_key(config), dtype, torch.device(device))


# ---------------------------------------------------------------------- STFT / iSTFT


def check_length(n_samples: int, config: MelConfig) -> None:
    """Raise a clear error when ``n_samples`` is too short for one frame."""
    check(
        n_samples >= config.min_samples,
        f"audio has {n_samples} samples, fewer than the {config.min_samples} one frame needs "
        f"(n_fft={config.n_fft}, padding={config.padding})",
    )


class FrameOps:
    """STFT analysis/synthesis for one config, signal length and device, ``(B, T, F)`` layout.

    The one framing implementation in melinvert: :func:`stft`, :func:`istft` and every
    Griffin-Lim iteration use it. ``analysis(synthesis(S))`` is the projection onto
    consistent spectrograms; the overlap-added squared-window envelope is inverted once here
    (floored at 1e-3 of its peak, so samples covered only by window tails are not blown up),
    not in every iteration.

    Parameters
    ----------
    config : MelConfig
    length : int
        Signal length in samples.
    dtype : torch.dtype
        Real dtype (float32 or float64).
    device : torch.device
    """

    def __init__(
        self,
        config: MelConfig,
        length: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str,
        boundary: Boundary | None = None,
    ):
        self.config = config
        self.length = length
        self.n_fft = config.n_fft
        self.hop = config.hop_length
        self.pad = config.pad
        self.n_frames = 1 + (length + 2 * self.pad - self.n_fft) // self.hop
        self.padded_len = self.n_fft + self.hop * (self.n_frames - 1)
        self.window = window(config, dtype=dtype, device=device)
        self._inv_env: torch.Tensor | None = None
        self.boundary = boundary if boundary is not None and boundary.held is not None else None

    #: Hops over which held samples cross-fade into the free estimate (:class:`Boundary`).
    KNOWN_RAMP_HOPS = 4

    def with_boundary(self, boundary: Boundary | None) -> FrameOps:
        """The same framing (window and envelope shared) whose synthesis holds ``boundary``."""
        other = copy.copy(self)
        other.boundary = boundary if boundary is not None and boundary.held is not None else None
        return other

    @property
    def inv_env(self) -> torch.Tensor:
        """``1 / sum_t w^2(n - t hop)`` over the padded signal, floored (read-only: shared by every
        FrameOps of the same window, hop, frame count, dtype and device)."""
        if self._inv_env is None:
            cfg, w = self.config, self.window
            self._inv_env = _inv_envelope(
                (cfg.window, cfg.win_length, self.n_fft), self.hop, self.n_frames, w.dtype, w.device
            )
        return self._inv_env

    def _ola(self, frames: torch.Tensor) -> torch.Tensor:
        """Overlap-add ``(B, T, n_fft)`` frames into ``(B, padded_len)``."""
        return _overlap_add(frames, self.hop)

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, length)`` real -> ``(B, T, F)`` complex, framed as the config frames."""
        return self._spectra(self._padded(x, right=True), self.n_frames)

    def _padded(self, x: torch.Tensor, *, right: bool) -> torch.Tensor:
        """``x`` with the config's padding on the left (and the right)."""
        if not self.pad:
            return x
        mode = "reflect" if self.config.pad_mode == "reflect" else "constant"
        return F.pad(x.unsqueeze(1), (self.pad, self.pad if right else 0), mode=mode).squeeze(1)

    def _spectra(self, padded: torch.Tensor, n: int) -> torch.Tensor:
        """The first ``n`` windowed frames of a padded signal, transformed: ``(B, n, F)``."""
        frames = padded[:, : self.n_fft + self.hop * (n - 1)].unfold(-1, self.n_fft, self.hop)
        return torch.fft.rfft(frames * self.window, dim=-1)

    def known_angles(self) -> torch.Tensor | None:
        """Phases ``(B, n, F)`` of the first ``n`` frames, those whose samples (padding
        included) all lie among the :attr:`boundary`'s held samples; ``None`` when there are
        none. An initial phase continues from them, so a block starts in phase with the one
        before."""
        if self.boundary is None:
            return None
        held = self.boundary.held
        k = held.shape[-1]
        n = min(self.n_frames, (k + self.pad - self.n_fft) // self.hop + 1) if k > self.pad else 0
        if n <= 0:
            return None
        return torch.angle(self._spectra(self._padded(held.to(self.window.dtype), right=False), n))

    def synthesis(self, spec: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` complex -> ``(B, length)`` real (least-squares overlap-add).

        With a :attr:`boundary` (samples held from the previous block of a long input), the
        result is held to it (:meth:`Boundary.hold`), so that consecutive blocks join without
        a seam.
        """
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=-1)
        frames.mul_(self.window)
        y = self._ola(frames).mul_(self.inv_env)
        y = y[:, self.pad : self.pad + self.length]
        if y.shape[-1] < self.length:
            y = F.pad(y, (0, self.length - y.shape[-1]))
        if self.boundary is not None:
            y = self.boundary.hold(y)
        return y

    def consistent(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, analysis(x))`` for ``x = synthesis(spec)``: the waveform ``(B, length)`` and
        the consistent spectrum nearest ``spec`` ``(B, T, F)``, the step of every Griffin-Lim
        iteration.

        Equal to the two calls, but the padded signal the analysis frames is the overlap-add
        buffer itself, its edges padded in place (no padded copy of the signal: one of the
        iteration's passes over memory). Falls back to the two calls where the frames do not
        cover the signal or a :attr:`boundary` holds its start.
        """
        p, n = self.pad, self.length
        if self.boundary is not None or p == 0 or self.padded_len < p + n or n <= p:
            x = self.synthesis(spec)
            return x, self.analysis(x)
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=-1)
        frames.mul_(self.window)
        buf = self._ola(frames).mul_(self.inv_env)  # (B, padded_len): x at [p, p + n)
        x = buf[:, p : p + n]
        r = self.padded_len - p - n  # samples of the right padding the frames reach
        if self.config.pad_mode == "reflect":
            buf[:, :p] = x[:, 1 : p + 1].flip(-1)
            if r:
                buf[:, p + n :] = x[:, n - 1 - r : n - 1].flip(-1)
        else:
            buf[:, :p] = 0.0
            buf[:, p + n :] = 0.0
        return x, self._spectra(buf, self.n_frames)


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """Overlap-add ``(B, T, n)`` frames ``hop`` apart into ``(B, n + hop * (T - 1))``."""
    b, t, n = frames.shape
    padded_len = n + hop * (t - 1)
    if n % hop == 0:
        r = n // hop
        chunks = frames.reshape(b, t, r, hop)
        out = frames.new_empty(b, t + r - 1, hop)
        out[:, :t] = chunks[:, :, 0]  # the first chunk copies, so only the tail needs zeros
        out[:, t:] = 0.0
        for i in range(1, r):
            out[:, i : i + t] += chunks[:, :, i]
        return out.reshape(b, -1)[:, :padded_len]
    folded = F.fold(
        frames.transpose(1, 2).contiguous(),
        output_size=(1, padded_len),
        kernel_size=(1, n),
        stride=(1, hop),
    )
    return folded.reshape(b, -1)


@functools.lru_cache(maxsize=16)
def _inv_envelope(
    window_key: tuple[str, int, int], hop: int, n_frames: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``1 / sum_t w^2(n - t hop)`` over ``n_fft + hop * (n_frames - 1)`` samples, floored at 1e-3
    of its peak (see :attr:`FrameOps.inv_env`); cached on every argument, so that inverting many
    clips of one length builds it once."""
    w = _window_cached(*window_key, dtype, device)
    env = _overlap_add((w**2).expand(1, n_frames, w.shape[0]), hop)[0]
    return 1.0 / env.clamp_min(1e-3 * float(env.max()))


@dataclasses.dataclass(frozen=True)
class Boundary:
    """Samples a block of a long input starts with, held from the block before (immutable).

    Parameters
    ----------
    held : torch.Tensor [shape=(B, K)] or None
        The previous block's output over the first ``K`` samples of this block.
    hop : int
        The config's hop, in samples.
    """

    held: torch.Tensor | None
    hop: int

    @property
    def ramp(self) -> int:
        """Samples over which the held samples cross-fade into the free estimate."""
        return 0 if self.held is None else min(FrameOps.KNOWN_RAMP_HOPS * self.hop, self.held.shape[-1])

    def hold(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, samples)`` held to the boundary (out of place, differentiable in ``x``).

        The first ``K - ramp`` samples become the held ones; over the last ``ramp`` of the ``K``
        the result cross-fades from them into ``x``; the rest is ``x``.
        """
        if self.held is None:
            return x
        k, ramp = self.held.shape[-1], self.ramp
        held = self.held.to(x.dtype)
        w = torch.linspace(1.0, 0.0, ramp + 2, dtype=x.dtype, device=x.device)[1:-1]
        fade = w * held[:, k - ramp :] + (1 - w) * x[:, k - ramp : k]
        return torch.cat([held[:, : k - ramp], fade, x[:, k:]], dim=-1)


def stft(x: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """Complex STFT as the config frames it.

    Parameters
    ----------
    x : torch.Tensor [shape=(..., samples), real]
    config : MelConfig

    Returns
    -------
    torch.Tensor [shape=(..., n_freqs, frames), complex]
        All frames, the one Whisper drops included; ``frames = config.n_frames(samples)``
        (+1 with ``drop_last_frame``).
    """
    check_length(x.shape[-1], config)
    ops = FrameOps(config, x.shape[-1], dtype=x.dtype, device=x.device)
    spec = ops.analysis(x.reshape(-1, x.shape[-1]))
    return spec.transpose(-1, -2).reshape(*x.shape[:-1], config.n_freqs, ops.n_frames)


def istft(spec: torch.Tensor, config: MelConfig, length: int | None = None) -> torch.Tensor:
    """Inverse of :func:`stft` (least-squares overlap-add with the analysis window).

    Parameters
    ----------
    spec : torch.Tensor [shape=(..., n_freqs, frames), complex]
    config : MelConfig
    length : int, optional
        Output samples; default: the longest signal the frames cover once padding is removed.

    Returns
    -------
    torch.Tensor [shape=(..., length), real]
    """
    t = spec.shape[-1]
    if length is None:
        length = config.n_fft + config.hop_length * (t - 1) - 2 * config.pad
    ops = FrameOps(config, length, dtype=spec.real.dtype, device=spec.device)
    check(
        ops.n_frames == t,
        f"spectrogram has {t} frames but a {length}-sample signal has {ops.n_frames} with this config",
    )
    flat = spec.reshape(-1, *spec.shape[-2:]).transpose(-1, -2)
    return ops.synthesis(flat).reshape(*spec.shape[:-2], length)


# ---------------------------------------------------------------------- mel


def power_law(squared: torch.Tensor, config: MelConfig, *, extra_eps: float = 0.0) -> torch.Tensor:
    """``|X|^2`` -> ``|X| ** power`` with the config's epsilon (added or clamped under the root).

    The one place the epsilon rule lives. ``extra_eps`` is added instead when the config has no
    epsilon (so that ``|X|`` is differentiable at zero); 0 reproduces the config exactly.
    """
    if config.mag_eps > 0:
        squared = (
            squared + config.mag_eps if config.mag_eps_mode == "add" else squared.clamp_min(config.mag_eps)
        )
    elif extra_eps:
        squared = squared + extra_eps
    if config.power == 2:
        return squared
    if config.power == 1:
        return squared.sqrt()
    return squared.pow(config.power / 2)


def magnitude(spec: torch.Tensor, config: MelConfig, *, extra_eps: float = 0.0) -> torch.Tensor:
    """``|X| ** power`` of a complex spectrum with the config's epsilon (:func:`power_law`)."""
    return power_law(spec.real.square() + spec.imag.square(), config, extra_eps=extra_eps)


def linear_mel(x: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """Uncompressed mel of audio ``(..., samples)`` -> ``(..., n_mels, frames)``."""
    spec = stft(x, config)
    if config.drop_last_frame:
        spec = spec[..., :-1]
    mag = magnitude(spec, config)
    fb = mel_basis(config, dtype=x.dtype, device=x.device)
    return torch.matmul(fb, mag)


def mel_spectrogram(y: Any, config: MelConfig | str, *, device: str | torch.device | None = None) -> Any:
    """Mel spectrogram of audio, exactly as the config's original project computes it.

    Parameters
    ----------
    y : np.ndarray or torch.Tensor [shape=(..., samples), float in [-1, 1]]
        Audio at ``config.sample_rate``. float64 in stays float64.
    config : MelConfig or str
        A config or a preset name.
    device : str or torch.device, optional
        Where to compute (``"auto"``: CUDA if available). Default: the input's device.

    Returns
    -------
    np.ndarray or torch.Tensor [shape=(..., n_mels, frames)]
        The compressed mel, of the same kind (numpy/torch) and dtype as ``y``; numpy results
        come back on the CPU, torch results stay on the compute device.
    """
    config = resolve_config(config)
    x, was_numpy, dtype = as_tensor(y, name="audio", device=device)
    check_length(x.shape[-1], config)
    mel = config.compression.encode(linear_mel(x, config))
    return to_output(mel, was_numpy, dtype)
