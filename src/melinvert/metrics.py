"""Objective measures of an inverted waveform against its reference.

Everything here is numerical: arrays in, numbers out, no files and no printing. Audio is numpy
or torch, float32 or float64, shaped ``(samples,)`` or batched ``(..., samples)``; a 1-D input
gives a Python ``float``, a batched one a float64 ``np.ndarray`` of the leading shape (a batch
equals its stacked items). Computation is float64 on the CPU.

Why several measures side by side: PESQ alone can be fooled. An output shifted by 384 samples
with spikes at its edges scored PESQ 4.13 where the correct output scored 3.32. So
:func:`score` always reports STOI, the log-mel L1 distance, the level and the estimated lag
beside PESQ, and it never shifts the estimate to hide a lag.

PESQ (``pesq``) and STOI (``pystoi``) are optional extras (``pip install melinvert[metrics]``);
:func:`extras_available` says which are importable, and :func:`pesq_wb` / :func:`stoi` return
``None`` when theirs is not.

What a listener would say, without a reference: :func:`mos` runs two no-reference MOS
predictors on an output, DNSMOS P.835 and P.808 (``speechmos`` with ``onnxruntime``, its ONNX
models inside its wheel) and DistillMOS (``distillmos``, its weights inside its wheel), with
``pip install melinvert[mos]`` and ``pip install --no-deps distillmos xls-r-sqa``;
:func:`mos_status` says which can run and why not. Both load packaged files only (nothing
reaches the network) once per process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import math
import operator
import os
import sys
import types
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from .config import Compression, MelConfig, resolve_config
from .dsp import as_tensor, check_length, linear_mel, stft
from .errors import MelinvertError, check, check_positive

__all__ = [
    "Level",
    "UnscorableError",
    "analysis_config",
    "estimate_lag",
    "extras_available",
    "level",
    "log_mel_l1",
    "lsd",
    "mos",
    "mos_status",
    "pesq_wb",
    "score",
    "snr_db",
    "spectral_convergence",
    "stoi",
    "waveform_spectral_convergence",
]

#: The rate PESQ (wideband) and STOI are computed at; other rates are resampled to it.
METRIC_RATE = 16000

#: Keys of :func:`score`'s result, in order.
SCORE_KEYS = (
    "pesq_wb",
    "stoi",
    "log_mel_l1",
    "spectral_convergence",
    "lsd",
    "snr_db",
    "rms_ratio_db",
    "peak",
    "lag_samples",
    "duration_s",
)

#: Keys :func:`mos` returns (and :func:`score` adds with ``mos=True``), in order.
MOS_KEYS = ("distillmos", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808")

#: The MOS models, each with the keys of :data:`MOS_KEYS` it fills.
MOS_MODELS = {
    "distillmos": ("distillmos",),
    "dnsmos": ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"),
}

#: How to install the MOS models (distillmos's declared requirements would replace torch).
MOS_INSTALL_HINT = 'pip install "melinvert[mos]" && pip install --no-deps distillmos xls-r-sqa'

#: Shortest audio :func:`mos` scores, in seconds.
MOS_MIN_SECONDS = 0.25


class UnscorableError(MelinvertError):
    """A measure cannot score this pair (PESQ on a silent or too-short clip, STOI without speech).

    A :class:`~melinvert.errors.MelinvertError`; :func:`score` turns it into ``None`` for that
    measure and keeps the others.
    """


class Level(NamedTuple):
    """Result of :func:`level`: ``rms_ratio_db`` (estimate / reference) and the estimate's ``peak``."""

    rms_ratio_db: Any
    peak: Any


# ---------------------------------------------------------------------- helpers


def _audio(x: Any, name: str) -> np.ndarray:
    """Validated float64 numpy copy of a float array (numpy or torch, any device)."""
    t, _, _ = as_tensor(x, name=name)
    return t.detach().to("cpu", torch.float64).numpy()


def _pair(reference: Any, estimate: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies of two arrays of the same shape ``(..., samples)``."""
    ref = _audio(reference, "reference")
    est = _audio(estimate, "estimate")
    check(
        ref.shape == est.shape,
        f"reference shape {ref.shape} and estimate shape {est.shape} differ; trim or pad them to match",
    )
    return ref, est


def _out(v: np.ndarray) -> float | np.ndarray:
    """A 0-d result as a Python float, a batched one as a float64 array."""
    v = np.asarray(v, dtype=np.float64)
    return float(v) if v.ndim == 0 else v


def _rate(sample_rate: Any) -> int:
    try:
        sr = operator.index(sample_rate)
    except TypeError:
        sr = None
    if sr is None or isinstance(sample_rate, bool):
        raise MelinvertError(f"sample_rate={sample_rate!r} must be an integer number of Hz")
    check(sr >= 1, f"sample_rate={sr} must be >= 1 Hz")
    return sr


def _config(config: MelConfig | str, sample_rate: int | None = None) -> MelConfig:
    cfg = resolve_config(config)
    if sample_rate is not None:
        check(
            cfg.sample_rate == sample_rate,
            f"config sample_rate={cfg.sample_rate} differs from the audio's sample_rate={sample_rate}; "
            "resample the audio or choose a matching config",
        )
    return cfg


def _check_audible(ref: np.ndarray, what: str) -> None:
    energy = np.sum(ref * ref, axis=-1)
    if np.any(energy == 0.0):
        where = "" if ref.ndim == 1 else f" (item {np.argwhere(energy == 0.0)[0].tolist()})"
        raise MelinvertError(f"the reference is silent (all zeros){where}; {what} needs an audible reference")


def _stft_mag2(x: np.ndarray, config: MelConfig) -> np.ndarray:
    """``|X|**2`` of every frame the config's STFT lays (``(..., n_freqs, frames)``, float64)."""
    check_length(x.shape[-1], config)
    spec = stft(torch.from_numpy(x), config)
    return (spec.real.square() + spec.imag.square()).numpy()


def _linear_mel(x: np.ndarray, config: MelConfig) -> np.ndarray:
    check_length(x.shape[-1], config)
    return linear_mel(torch.from_numpy(x), config).numpy()


def _import_extra(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def extras_available() -> dict[str, bool]:
    """Which optional measures can run: ``{"pesq": bool, "pystoi": bool}``.

    ``pesq`` backs :func:`pesq_wb` and ``pystoi`` backs :func:`stoi`; both come with
    ``pip install melinvert[metrics]``.
    """
    return {name: _import_extra(name) is not None for name in ("pesq", "pystoi")}


@functools.lru_cache(maxsize=32)
def analysis_config(sample_rate: int) -> MelConfig:
    """The fixed analysis config :func:`score` uses when none is given.

    ``n_fft`` is the power of two nearest (in log scale) to 64 ms (1024 at 16 and 22.05 kHz,
    2048 at 44.1 kHz, 4096 at 48 kHz), ``hop_length = n_fft // 4``, a periodic Hann window,
    centred reflect-padded frames, 80 Slaney mels with Slaney normalisation from 0 Hz to
    Nyquist, on the magnitude (``power=1``); the compression (ln, floor 1e-5) is not used by
    the measures, which all work on linear values.
    """
    sr = _rate(sample_rate)
    n_fft = max(16, 2 ** round(math.log2(0.064 * sr)))
    return MelConfig(
        sample_rate=sr,
        n_fft=n_fft,
        hop_length=n_fft // 4,
        window="hann",
        padding="center",
        pad_mode="reflect",
        power=1.0,
        n_mels=80,
        fmin=0.0,
        fmax=None,
        compression=Compression(kind="ln", floor=1e-5),
    )


# ---------------------------------------------------------------------- spectral measures


def spectral_convergence(ref_mag: Any, est_mag: Any) -> float | np.ndarray:
    """Spectral convergence ``||ref - est||_F / ||ref||_F`` of two STFT magnitudes.

    Parameters
    ----------
    ref_mag, est_mag : np.ndarray or torch.Tensor [shape=(..., n_freqs, frames), non-negative]
        Magnitudes ``|X|`` of the reference and the estimate, same shape.

    Returns
    -------
    float or np.ndarray [shape=(...)]
        0 for identical magnitudes; 1 for an all-zero estimate. The norm runs over the last
        two dimensions, one value per item.

    Raises
    ------
    MelinvertError
        On shapes that differ or have fewer than two dimensions, NaN/Inf, or an all-zero
        reference.
    """
    ref = _audio(ref_mag, "ref_mag")
    est = _audio(est_mag, "est_mag")
    check(
        ref.shape == est.shape,
        f"ref_mag shape {ref.shape} and est_mag shape {est.shape} differ",
    )
    check(ref.ndim >= 2, f"magnitudes must be shaped (..., n_freqs, frames), got shape {ref.shape}")
    den = np.sqrt(np.sum(ref * ref, axis=(-2, -1)))
    check(bool(np.all(den > 0)), "ref_mag is all zeros: spectral convergence is undefined")
    diff = ref - est
    return _out(np.sqrt(np.sum(diff * diff, axis=(-2, -1))) / den)


def waveform_spectral_convergence(
    reference: Any, estimate: Any, config: MelConfig | str
) -> float | np.ndarray:
    """:func:`spectral_convergence` of two waveforms' STFT magnitudes ``|X|``.

    Parameters
    ----------
    reference, estimate : np.ndarray or torch.Tensor [shape=(..., samples)]
        Audio at ``config.sample_rate``, same shape.
    config : MelConfig or str
        Supplies the STFT (``n_fft``, hop, window, padding); every frame it lays is used.

    Returns
    -------
    float or np.ndarray [shape=(...)]
    """
    cfg = _config(config)
    ref, est = _pair(reference, estimate)
    _check_audible(ref, "spectral convergence")
    return spectral_convergence(np.sqrt(_stft_mag2(ref, cfg)), np.sqrt(_stft_mag2(est, cfg)))


def log_mel_l1(
    reference: Any, estimate: Any, config: MelConfig | str, *, floor: float = 1e-5
) -> float | np.ndarray:
    """Mean absolute difference of natural-log linear mels.

    ``mean |ln(max(M_ref, floor)) - ln(max(M_est, floor))|`` over mel bands and frames, where
    ``M`` is the config's *linear* mel (:func:`melinvert.dsp.linear_mel`: its STFT, magnitude
    epsilon, ``power`` and filterbank, before any compression). Using the linear mel with one
    fixed logarithm makes the number comparable across configs that differ only in their
    compression (ln, log10, dB, Whisper, ...). With the ``hifigan-22k-80`` preset and the
    default floor it equals HiFi-GAN's mel L1 loss (before its weight of 45). For a power mel
    (``power=2``) the log differences are about twice those of a magnitude mel.

    Parameters
    ----------
    reference, estimate : np.ndarray or torch.Tensor [shape=(..., samples)]
        Audio at ``config.sample_rate``, same shape.
    config : MelConfig or str
    floor : float
        Clamp before the logarithm, in the linear mel's units (> 0). Differences below it are
        ignored: 1e-5 is about -100 dB re a full-scale magnitude mel.

    Returns
    -------
    float or np.ndarray [shape=(...)]
        In nepers (natural-log units); 0 for identical audio.
    """
    cfg = _config(config)
    check_positive("floor", floor)
    ref, est = _pair(reference, estimate)
    lr = np.log(np.maximum(_linear_mel(ref, cfg), floor))
    le = np.log(np.maximum(_linear_mel(est, cfg), floor))
    return _out(np.mean(np.abs(lr - le), axis=(-2, -1)))


def lsd(
    reference: Any, estimate: Any, config: MelConfig | str, *, floor: float = 1e-10
) -> float | np.ndarray:
    """Log-spectral distance in dB on the STFT power.

    For each frame ``t``: ``sqrt(mean_f (10 log10(max(P_ref, floor) / max(P_est, floor)))**2)``,
    then the mean over frames, where ``P = |X|**2`` of the config's STFT (all the frames it
    lays, every one-sided bin).

    Parameters
    ----------
    reference, estimate : np.ndarray or torch.Tensor [shape=(..., samples)]
        Audio at ``config.sample_rate``, same shape.
    config : MelConfig or str
    floor : float
        Clamp on ``P`` before the logarithm (> 0), on the unnormalised STFT of audio in
        [-1, 1]; the default 1e-10 (-100 dB) lies far below the bins of any audible signal
        (a full-scale sine reaches about ``(win_length / 4)**2``), so only digital silence
        is clamped.

    Returns
    -------
    float or np.ndarray [shape=(...)]
        In dB; 0 for identical audio.
    """
    cfg = _config(config)
    check_positive("floor", floor)
    ref, est = _pair(reference, estimate)
    pr = np.maximum(_stft_mag2(ref, cfg), floor)
    pe = np.maximum(_stft_mag2(est, cfg), floor)
    d = 10.0 * (np.log10(pr) - np.log10(pe))
    per_frame = np.sqrt(np.mean(d * d, axis=-2))
    return _out(np.mean(per_frame, axis=-1))


# ---------------------------------------------------------------------- waveform measures


def snr_db(reference: Any, estimate: Any) -> float | np.ndarray:
    """Signal-to-noise ratio ``10 log10(sum ref**2 / sum (ref - est)**2)`` in dB.

    Sample by sample, with no alignment or gain fitting, so a lag or a polarity flip shows as
    a low SNR (phase retrieval rarely scores well here; see :func:`score` for the rest).

    Parameters
    ----------
    reference, estimate : np.ndarray or torch.Tensor [shape=(..., samples)]
        Same shape.

    Returns
    -------
    float or np.ndarray [shape=(...)]
        ``inf`` for identical signals.

    Raises
    ------
    MelinvertError
        On a silent (all-zero) reference, or any problem :func:`spectral_convergence` names.
    """
    ref, est = _pair(reference, estimate)
    _check_audible(ref, "SNR")
    sig = np.sum(ref * ref, axis=-1)
    diff = ref - est
    noise = np.sum(diff * diff, axis=-1)
    with np.errstate(divide="ignore"):
        return _out(10.0 * np.log10(sig) - 10.0 * np.log10(noise))


def estimate_lag(
    reference: Any, estimate: Any, sample_rate: int, max_lag_s: float = 0.05
) -> int | np.ndarray:
    """The lag of ``estimate`` behind ``reference`` in samples, from their energy envelopes.

    The lag ``L`` maximises the cross-correlation ``sum_n e_est[n] * e_ref[n - L]`` over
    ``|L| <= max_lag_s * sample_rate``, where ``e`` is the short-time energy (``x^2`` smoothed
    by a 10 ms Hann window, mean removed). **Positive means the estimate is late**:
    ``estimate[n] ~ reference[n - L]``, so ``estimate[L:]`` lines up with ``reference``.
    Envelopes, unlike waveforms, do not depend on the phase a magnitude-only inversion
    chooses (nor on polarity), so a phase-retrieved output of a periodic sound is not
    "aligned" a pitch period off, while a pure delay still shows exactly. Among equal peaks
    the smallest ``|L|`` wins (0 for silence).

    Parameters
    ----------
    reference, estimate : np.ndarray or torch.Tensor [shape=(..., samples)]
        Same leading shape; the lengths may differ.
    sample_rate : int
        Hz, to convert ``max_lag_s``.
    max_lag_s : float
        Largest lag searched, in seconds (>= 0); 50 ms by default.

    Returns
    -------
    int or np.ndarray [shape=(...), int64]
    """
    sr = _rate(sample_rate)
    check(
        isinstance(max_lag_s, (int, float)) and not isinstance(max_lag_s, bool) and 0 <= max_lag_s < math.inf,
        f"max_lag_s={max_lag_s!r} must be a finite number >= 0",
    )
    ref = _audio(reference, "reference")
    est = _audio(estimate, "estimate")
    check(
        ref.shape[:-1] == est.shape[:-1],
        f"reference shape {ref.shape} and estimate shape {est.shape} differ in their leading dimensions",
    )
    ref, est = _energy_envelope(ref, sr), _energy_envelope(est, sr)
    nr, ne = ref.shape[-1], est.shape[-1]
    max_lag = min(round(max_lag_s * sr), max(nr, ne) - 1)
    n = _next_fast_len(nr + ne - 1)
    corr = np.fft.irfft(np.fft.rfft(est, n) * np.conj(np.fft.rfft(ref, n)), n)
    # candidate lags ordered 0, 1, -1, 2, -2, ... so that argmax keeps the smallest |lag| on ties
    k = np.arange(1, max_lag + 1)
    lags = np.empty(2 * max_lag + 1, dtype=np.int64)
    lags[0] = 0
    lags[1::2] = k
    lags[2::2] = -k
    valid = (lags <= ne - 1) & (lags >= -(nr - 1))
    lags = lags[valid]
    vals = np.abs(corr[..., lags % n])
    best = lags[np.argmax(vals, axis=-1)]
    return int(best) if best.ndim == 0 else best


def _energy_envelope(x: np.ndarray, sr: int) -> np.ndarray:
    """``x^2`` smoothed by a 10 ms Hann window (same length, zero-phase), mean removed."""
    from scipy.signal import fftconvolve

    w = np.hanning(max(3, round(0.010 * sr)) | 1)
    env = fftconvolve(x * x, (w / w.sum()).reshape((1,) * (x.ndim - 1) + (-1,)), mode="same", axes=-1)
    return env - env.mean(axis=-1, keepdims=True)


def _next_fast_len(n: int) -> int:
    from scipy.fft import next_fast_len

    return int(next_fast_len(n, real=True))


def level(reference: Any, estimate: Any) -> Level:
    """Loudness of the estimate relative to the reference, and its peak.

    Parameters
    ----------
    reference, estimate : np.ndarray or torch.Tensor [shape=(..., samples)]
        Same shape.

    Returns
    -------
    Level
        ``rms_ratio_db = 20 log10(rms(estimate) / rms(reference))`` (-6.02 for a copy at half
        amplitude, ``-inf`` for a silent estimate) and ``peak = max |estimate|`` (above 1
        means the estimate clips when written as fixed-point audio). Floats for 1-D input,
        arrays of the leading shape for batches.

    Raises
    ------
    MelinvertError
        On a silent (all-zero) reference.
    """
    ref, est = _pair(reference, estimate)
    _check_audible(ref, "the level ratio")
    with np.errstate(divide="ignore"):
        ratio = 10.0 * np.log10(np.mean(est * est, axis=-1)) - 10.0 * np.log10(np.mean(ref * ref, axis=-1))
    return Level(_out(ratio), _out(np.max(np.abs(est), axis=-1)))


# ---------------------------------------------------------------------- PESQ / STOI


def _to_metric_rate(x: np.ndarray, sr: int) -> np.ndarray:
    if sr == METRIC_RATE:
        return x
    import soxr

    return np.asarray(soxr.resample(x, sr, METRIC_RATE, quality="VHQ"), dtype=np.float64)


def _per_item(fn: Any, ref: np.ndarray, est: np.ndarray) -> float | np.ndarray:
    if ref.ndim == 1:
        return fn(ref, est)
    out = np.empty(ref.shape[:-1], dtype=np.float64)
    for idx in np.ndindex(*ref.shape[:-1]):
        out[idx] = fn(ref[idx], est[idx])
    return out


def pesq_wb(reference: Any, estimate: Any, sample_rate: int) -> float | np.ndarray | None:
    """Wideband PESQ (ITU-T P.862.2 MOS-LQO, about 1.04 to 4.64) of the estimate.

    Both signals are resampled to 16 kHz (``soxr``, quality ``"VHQ"``) when ``sample_rate``
    differs, since wideband PESQ is defined there only. PESQ aligns the signals and their
    levels itself, so it is blind to a gain and may be fooled by a lag; read it beside
    :func:`level`, :func:`estimate_lag` and :func:`stoi` (as :func:`score` does).

    Parameters
    ----------
    reference, estimate : np.ndarray or torch.Tensor [shape=(..., samples)]
        Speech at ``sample_rate``, same shape.
    sample_rate : int
        Hz.

    Returns
    -------
    float, np.ndarray [shape=(...)] or None
        ``None`` when the ``pesq`` package is not installed (see :func:`extras_available`).

    Raises
    ------
    UnscorableError
        When PESQ cannot score the pair: under 0.25 s of audio, a silent reference or
        estimate, or no speech found in the reference (a :class:`MelinvertError`).
    """
    sr = _rate(sample_rate)
    ref, est = _pair(reference, estimate)
    mod = _import_extra("pesq")
    if mod is None:
        return None

    def one(r: np.ndarray, e: np.ndarray) -> float:
        r16, e16 = _to_metric_rate(r, sr), _to_metric_rate(e, sr)
        if r16.shape[-1] < METRIC_RATE // 4:
            raise UnscorableError(
                f"PESQ needs at least 0.25 s of audio; got {r.shape[-1] / sr:.3g} s ({r.shape[-1]} samples)"
            )
        if not np.any(r16):
            raise UnscorableError("PESQ cannot score against a silent (all-zero) reference")
        if not np.any(e16):
            raise UnscorableError("PESQ cannot score a silent (all-zero) estimate")
        try:
            return float(mod.pesq(METRIC_RATE, r16, e16, "wb"))
        except mod.NoUtterancesError:
            raise UnscorableError("PESQ found no speech (utterances) in the reference") from None
        except (mod.PesqError, ValueError) as e:
            raise UnscorableError(f"PESQ failed on this pair: {e}") from None

    return _per_item(one, ref, est)


def stoi(
    reference: Any, estimate: Any, sample_rate: int, *, extended: bool = False
) -> float | np.ndarray | None:
    """Short-time objective intelligibility (``pystoi``), about 0 to 1, higher is better.

    Both signals are resampled to 16 kHz (``soxr``, quality ``"VHQ"``) when ``sample_rate``
    differs. ``pystoi`` would accept any rate (it resamples to 10 kHz itself), but going
    through one fixed rate keeps the numbers comparable with :func:`pesq_wb`'s input.

    Parameters
    ----------
    reference, estimate : np.ndarray or torch.Tensor [shape=(..., samples)]
        Speech at ``sample_rate``, same shape.
    sample_rate : int
        Hz.
    extended : bool
        Extended STOI (Jensen & Taal 2016) instead of the classic measure.

    Returns
    -------
    float, np.ndarray [shape=(...)] or None
        ``None`` when ``pystoi`` is not installed (see :func:`extras_available`).

    Raises
    ------
    UnscorableError
        When the reference has too little non-silent audio for STOI's 30 frames (about
        0.4 s); ``pystoi`` would return a meaningless 1e-5 there.
    """
    sr = _rate(sample_rate)
    ref, est = _pair(reference, estimate)
    mod = _import_extra("pystoi")
    if mod is None:
        return None

    def one(r: np.ndarray, e: np.ndarray) -> float:
        r16, e16 = _to_metric_rate(r, sr), _to_metric_rate(e, sr)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = float(mod.stoi(r16, e16, METRIC_RATE, extended=bool(extended)))
        if any("Not enough STFT frames" in str(w.message) for w in caught):
            raise UnscorableError(
                "STOI needs about 0.4 s of non-silent reference audio; "
                f"this reference ({r.shape[-1] / sr:.3g} s) has too little"
            )
        return value

    return _per_item(one, ref, est)


# ---------------------------------------------------------------------- no-reference MOS


class _TorchaudioStandIn(types.ModuleType):
    """Stands in for a missing ``torchaudio`` while ``distillmos`` is imported (see below)."""

    def __getattr__(self, name: str) -> Any:
        raise ImportError(
            f"torchaudio.{name}: torchaudio is not installed; melinvert gives DistillMOS audio "
            "itself and never needs it"
        )


@contextlib.contextmanager
def _without_torchaudio() -> Iterator[None]:
    """Let ``distillmos.sqa`` import where torchaudio is not installed.

    ``distillmos.sqa`` imports torchaudio at its top for one thing only, reading files in its
    command-line helper; the model class needs torch alone, and melinvert hands it tensors.
    Installing torchaudio would replace the CPU torch with another build, so while the module
    is imported (and only then) ``sys.modules`` holds a stand-in whose attributes raise
    ImportError; afterwards ``import torchaudio`` fails as before. A real torchaudio, when
    installed, is used as is.
    """
    if "torchaudio" in sys.modules or importlib.util.find_spec("torchaudio") is not None:
        yield
        return
    stand_in = _TorchaudioStandIn("torchaudio")
    sys.modules["torchaudio"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("torchaudio") is stand_in:
            del sys.modules["torchaudio"]


@functools.lru_cache(maxsize=1)
def _distillmos_model() -> torch.nn.Module:
    """DistillMOS (variant 7) with the weights inside the ``distillmos`` wheel, once per process."""
    with _without_torchaudio():
        sqa = importlib.import_module("distillmos.sqa")
    model = sqa.ConvTransformerSQAModel(load_weights=False)
    state = torch.load(sqa.DEFAULT_WEIGHTS_CHKPT, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()


@functools.lru_cache(maxsize=1)
def _dnsmos_model() -> Any:
    """DNSMOS P.835 (``sig_bak_ovr.onnx``) and P.808 (``model_v8.onnx``) from ``speechmos``'s wheel."""
    dnsmos = importlib.import_module("speechmos.dnsmos")
    folder = os.path.join(os.path.dirname(os.path.abspath(dnsmos.__file__)), "dnsmos_models")
    paths = [os.path.join(folder, name) for name in ("sig_bak_ovr.onnx", "model_v8.onnx")]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ImportError(f"speechmos is installed without its models ({', '.join(missing)})")
    return dnsmos.DNSMOS(*paths)


def _distillmos_one(model: torch.nn.Module, x16: np.ndarray) -> tuple[float, ...]:
    with torch.inference_mode():
        return (float(model(torch.from_numpy(x16.astype(np.float32))[None]).reshape(())),)


def _dnsmos_one(model: Any, x16: np.ndarray) -> tuple[float, ...]:
    # DNSMOS refuses samples outside [-1, 1]: clip, as writing 16-bit PCM would
    r = model(np.clip(x16, -1.0, 1.0).astype(np.float32), METRIC_RATE, False)
    return tuple(float(r[k]) for k in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos"))


_MOS_RUNNERS = {"distillmos": (_distillmos_model, _distillmos_one), "dnsmos": (_dnsmos_model, _dnsmos_one)}


def mos_status() -> dict[str, str | None]:
    """Which MOS models :func:`mos` can run: ``{"distillmos": ..., "dnsmos": ...}``.

    Returns
    -------
    dict
        ``None`` for a model that loads (it is then loaded and cached), else one line saying
        why not, starting ``"not installed"`` and ending with the install command
        (:data:`MOS_INSTALL_HINT`).
    """
    out: dict[str, str | None] = {}
    for name, (load, _) in _MOS_RUNNERS.items():
        try:
            load()
            out[name] = None
        except ImportError as e:
            out[name] = f"not installed ({e}); install with: {MOS_INSTALL_HINT}"
    return out


def mos(
    audio: Any, sample_rate: int, *, models: tuple[str, ...] | list[str] | None = None
) -> dict[str, float | np.ndarray | None]:
    """No-reference MOS predictions (1 to 5, higher is better) of speech.

    DistillMOS (Stahl & Gamper 2025, a model distilled from XLS-R speech quality assessment,
    trained on listening tests) and DNSMOS (Reddy et al. 2022: P.835 signal ``sig``,
    background ``bak`` and overall ``ovrl`` quality, and P.808 overall quality). Each item is
    resampled to 16 kHz (``soxr``, ``"VHQ"``). DistillMOS scales each item to peak 1 (it is
    blind to the level); DNSMOS sees the level, and samples beyond +-1 are clipped first. A
    clip shorter than the models' windows is padded (DistillMOS, 7.68 s, with zeros) or
    repeated (DNSMOS, 9.01 s), as their authors do; longer clips are averaged over windows.

    Parameters
    ----------
    audio : np.ndarray or torch.Tensor [shape=(..., samples)]
        Speech at ``sample_rate``, at least :data:`MOS_MIN_SECONDS` long.
    sample_rate : int
        Hz.
    models : sequence of {"distillmos", "dnsmos"}, optional
        Which models to run (default: both).

    Returns
    -------
    dict
        The keys of :data:`MOS_KEYS`: a float for 1-D audio, a float64 array of the leading
        shape for a batch; ``None`` for a model not asked for or not installed (see
        :func:`mos_status`).

    Raises
    ------
    UnscorableError
        On audio shorter than :data:`MOS_MIN_SECONDS` (a :class:`MelinvertError`).
    MelinvertError
        On audio that is not float, NaN/Inf, or an unknown model name.
    """
    sr = _rate(sample_rate)
    x = _audio(audio, "audio")
    chosen = tuple(MOS_MODELS) if models is None else tuple(models)
    unknown = [m for m in chosen if m not in MOS_MODELS]
    check(
        not unknown,
        f"unknown MOS model(s) {', '.join(map(str, unknown))}; choose from {', '.join(MOS_MODELS)}",
    )
    if x.shape[-1] < MOS_MIN_SECONDS * sr:
        raise UnscorableError(
            f"MOS needs at least {MOS_MIN_SECONDS} s of audio; got {x.shape[-1] / sr:.3g} s ({x.shape[-1]} samples)"
        )
    result: dict[str, float | np.ndarray | None] = dict.fromkeys(MOS_KEYS)
    items = [_to_metric_rate(x[idx], sr) for idx in np.ndindex(*x.shape[:-1])]
    for name in chosen:
        load, run = _MOS_RUNNERS[name]
        try:
            model = load()
        except ImportError:
            continue
        values = np.array([run(model, item) for item in items], dtype=np.float64)
        for j, key in enumerate(MOS_MODELS[name]):
            result[key] = _out(values[:, j].reshape(x.shape[:-1]))
    return result


_mos = mos  # score()'s parameter of the same name hides the function there


# ---------------------------------------------------------------------- all at once


def score(
    reference: Any,
    estimate: Any,
    sample_rate: int,
    *,
    config: MelConfig | None = None,
    extras: bool = True,
    mos: bool = False,
) -> dict[str, float | None]:
    """Every measure of one estimate against its reference.

    The two are trimmed to the shorter length and **not** shifted: the lag is estimated and
    reported, so a shifted output shows (in ``lag_samples`` and a low ``snr_db``) instead of
    being aligned away.

    Parameters
    ----------
    reference, estimate : np.ndarray or torch.Tensor [shape=(samples,)]
        Audio at ``sample_rate``; the lengths may differ.
    sample_rate : int
        Hz.
    config : MelConfig or str, optional
        Supplies the STFT and mel for ``log_mel_l1``, ``spectral_convergence`` and ``lsd``;
        its ``sample_rate`` must equal ``sample_rate``. Default:
        :func:`analysis_config` ``(sample_rate)`` (64 ms Hann frames, hop a quarter frame, 80
        Slaney mels to Nyquist, magnitude), so scores of different methods and presets are
        computed the same way.
    extras : bool
        Compute PESQ and STOI (slow-ish, optional packages). ``False`` leaves them ``None``.
    mos : bool
        Also the no-reference MOS predictions of the (trimmed) estimate, the keys of
        :data:`MOS_KEYS` (:func:`mos`; ``None`` for a model not installed, see
        :func:`mos_status`). Off by default: they take about 0.1 s per second of audio.

    Returns
    -------
    dict
        ``pesq_wb`` (:func:`pesq_wb`), ``stoi`` (:func:`stoi`) -- ``None`` when ``extras`` is
        off, the package is missing, or the measure cannot score this pair (call it directly
        to see why) --, ``log_mel_l1`` (:func:`log_mel_l1`, nepers), ``spectral_convergence``
        (:func:`waveform_spectral_convergence`), ``lsd`` (:func:`lsd`, dB), ``snr_db``
        (:func:`snr_db`, ``inf`` when identical), ``rms_ratio_db`` and ``peak``
        (:func:`level`), ``lag_samples`` (:func:`estimate_lag`, int, positive = estimate
        late, within 50 ms) and ``duration_s`` (of the trimmed pair). Floats otherwise.

    Raises
    ------
    MelinvertError
        On input that is not 1-D float audio, NaN/Inf, a silent reference, a pair shorter
        than one analysis frame, or a config at another rate.
    """
    sr = _rate(sample_rate)
    cfg = analysis_config(sr) if config is None else _config(config, sr)
    ref = _audio(reference, "reference")
    est = _audio(estimate, "estimate")
    check(ref.ndim == 1, f"reference must be 1-D (samples,), got shape {ref.shape}")
    check(est.ndim == 1, f"estimate must be 1-D (samples,), got shape {est.shape}")
    n = min(ref.shape[0], est.shape[0])
    ref, est = ref[:n], est[:n]
    check(
        n >= cfg.min_samples,
        f"the trimmed pair has {n} samples, fewer than the {cfg.min_samples} one analysis frame needs",
    )
    _check_audible(ref, "score()")
    lvl = level(ref, est)
    result: dict[str, float | None] = {
        "pesq_wb": None,
        "stoi": None,
        "log_mel_l1": float(log_mel_l1(ref, est, cfg)),
        "spectral_convergence": float(waveform_spectral_convergence(ref, est, cfg)),
        "lsd": float(lsd(ref, est, cfg)),
        "snr_db": float(snr_db(ref, est)),
        "rms_ratio_db": float(lvl.rms_ratio_db),
        "peak": float(lvl.peak),
        "lag_samples": int(estimate_lag(ref, est, sr)),
        "duration_s": n / sr,
    }
    if extras:
        for key, fn in (("pesq_wb", pesq_wb), ("stoi", stoi)):
            try:
                value = fn(ref, est, sr)
            except UnscorableError:
                value = None
            result[key] = None if value is None else float(value)
    if mos:
        try:
            result.update(_mos(est, sr))
        except UnscorableError:
            result.update(dict.fromkeys(MOS_KEYS))
    return result
