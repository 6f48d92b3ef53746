"""Mels that no waveform made: the degradations of predicted mels, reproducibly.

A TTS acoustic model's mel is over-smoothed in time and frequency (decoders trained with L1/L2
losses average), a little noisy and sometimes off in level; an enhancer's or separator's mel is
a mixture's mel times a mask. These functions make such mels from the mels of real speech, so
that the original recording stays the reference (benchmarks) or the target (training
augmentation).

Every function takes a **compressed** mel ``(..., n_mels, frames)`` of a config (numpy or
torch, float32 or float64; the result is of the same kind and dtype) and works on the natural
log of the config's *linear* mel, ``ln(max(decode(mel), floor))`` with the compression's
floor, then encodes the result again: so every codec (ln, log10, dB, Whisper, Coqui,
standardised, ...) gets the same degradation, and strengths are in codec-independent units
(frames, mel bins, nepers, dB). A strength of 0 returns an unchanged copy. Batches equal their
stacked items; random functions take a ``seed`` or a ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .config import MelConfig, resolve_config
from .dsp import as_tensor, check_length, linear_mel, to_output
from .errors import check

__all__ = [
    "Degradation",
    "add_log_noise",
    "apply",
    "gaussian_blur",
    "masked_mixture",
    "mix_at_snr",
    "oracle_masked_mel",
    "shift_level",
    "smooth_frequency",
    "smooth_time",
]


# ---------------------------------------------------------------------- helpers


def _nonneg(name: str, value: Any) -> float:
    check(
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf,
        f"{name}={value!r} must be a finite number >= 0",
    )
    return float(value)


def _finite(name: str, value: Any) -> float:
    check(
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        f"{name}={value!r} must be a finite number",
    )
    return float(value)


def _mel(mel: Any, config: MelConfig | str) -> tuple[torch.Tensor, bool, torch.dtype, MelConfig]:
    cfg = resolve_config(config)
    t, was_numpy, dtype = as_tensor(mel, name="mel")
    check(t.ndim >= 2, f"mel must be shaped (..., n_mels, frames), got shape {tuple(t.shape)}")
    check(
        t.shape[-2] == cfg.n_mels,
        f"mel has {t.shape[-2]} bins but the config has n_mels={cfg.n_mels}; wrong layout or config?",
    )
    return t, was_numpy, dtype, cfg


def _to_log(t: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Natural log of the config's linear mel, floored at the compression's floor."""
    return torch.log(torch.clamp(cfg.compression.decode(t), min=cfg.compression.floor))


def _from_log(log_mel: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    return cfg.compression.encode(torch.exp(log_mel))


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    check(seed is None or generator is None, "give a seed or a generator, not both")
    if generator is not None:
        check(isinstance(generator, torch.Generator), "generator must be a torch.Generator")
        return generator
    check(
        seed is None or (isinstance(seed, int) and not isinstance(seed, bool)),
        f"seed={seed!r} must be an integer or None",
    )
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def _noise(like: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, drawn item after item (float64 on the CPU)."""
    item = like.shape[-2:]
    lead = like.shape[:-2]
    draws = [torch.randn(item, generator=g, dtype=torch.float64) for _ in range(math.prod(lead))]
    return torch.stack(draws).reshape(like.shape).to(like.dtype).to(like.device)


def _gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


# ---------------------------------------------------------------------- blur


def gaussian_blur(x: torch.Tensor, sigma: float, dim: int = -1) -> torch.Tensor:
    """Gaussian blur of a tensor along one dimension.

    The kernel is ``exp(-k^2 / (2 sigma^2))`` normalised to sum 1, truncated at
    ``int(4 sigma + 0.5)`` samples each side, and the edges are extended symmetrically
    (``d c b a | a b c d``, repeated as often as the kernel needs): the same result as
    ``scipy.ndimage.gaussian_filter1d(x, sigma, axis=dim)`` with its defaults.

    Parameters
    ----------
    x : torch.Tensor [shape=(...), float]
    sigma : float
        Standard deviation in samples of ``dim`` (>= 0; 0 returns a copy).
    dim : int

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device as ``x``.
    """
    sigma = _nonneg("sigma", sigma)
    if sigma == 0.0:
        return x.clone()
    xt = x.movedim(dim, -1)
    n = xt.shape[-1]
    kernel = _gaussian_kernel(sigma, x.dtype, x.device)
    r = (kernel.numel() - 1) // 2
    idx = torch.arange(-r, n + r, device=x.device) % (2 * n)
    idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
    padded = xt.index_select(-1, idx).reshape(-1, 1, n + 2 * r)
    out = torch.nn.functional.conv1d(padded, kernel.view(1, 1, -1))
    return out.reshape(xt.shape).movedim(-1, dim).contiguous()


def smooth_time(mel: Any, config: MelConfig | str, sigma_frames: float) -> Any:
    """Over-smoothing in time: Gaussian blur of the log-mel along frames.

    Parameters
    ----------
    mel : np.ndarray or torch.Tensor [shape=(..., n_mels, frames)]
        Compressed mel of ``config``.
    config : MelConfig or str
    sigma_frames : float
        Standard deviation of the blur in frames (>= 0).

    Returns
    -------
    np.ndarray or torch.Tensor [shape=(..., n_mels, frames)]
        Compressed as ``mel``.
    """
    return apply(mel, config, Degradation(time_sigma=sigma_frames))


def smooth_frequency(mel: Any, config: MelConfig | str, sigma_bins: float) -> Any:
    """Over-smoothing in frequency: Gaussian blur of the log-mel along mel bins.

    ``sigma_bins`` is the blur's standard deviation in mel bins (>= 0); otherwise as
    :func:`smooth_time`.
    """
    return apply(mel, config, Degradation(freq_sigma=sigma_bins))


def add_log_noise(
    mel: Any,
    config: MelConfig | str,
    std: float,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> Any:
    """Gaussian noise on the natural log of the linear mel (a multiplicative error).

    ``std`` is in nepers (natural-log units) whatever the codec: 0.1 changes each value by about
    10 % (0.87 dB). The noise is drawn on the CPU in float64 from ``generator`` (or a new one
    seeded with ``seed``; neither: fresh entropy) one item after the other, so a batch equals
    its items degraded one after the other with the same generator.
    """
    return apply(mel, config, Degradation(noise_std=std), seed=seed, generator=generator)


def shift_level(mel: Any, config: MelConfig | str, db: float) -> Any:
    """A level offset: the audio the mel describes made ``db`` dB louder (negative: quieter).

    The linear mel is scaled by ``10 ** (db * power / 20)`` (``power`` 1 for a magnitude mel,
    2 for a power mel); values the codec clips (its floor, ``top_db``) clip as they would.
    """
    return apply(mel, config, Degradation(level_db=db))


# ---------------------------------------------------------------------- combinations


@dataclass(frozen=True)
class Degradation:
    """A combination of degradations, applied by :func:`apply` in the order of the fields.

    Parameters
    ----------
    level_db : float
        Level offset in dB (:func:`shift_level`).
    time_sigma : float
        Gaussian blur along frames, standard deviation in frames (:func:`smooth_time`).
    freq_sigma : float
        Gaussian blur along mel bins, standard deviation in bins (:func:`smooth_frequency`).
    noise_std : float
        Gaussian noise on the natural-log mel, in nepers (:func:`add_log_noise`).
    """

    level_db: float = 0.0
    time_sigma: float = 0.0
    freq_sigma: float = 0.0
    noise_std: float = 0.0

    def __post_init__(self) -> None:
        _finite("level_db", self.level_db)
        for name in ("time_sigma", "freq_sigma", "noise_std"):
            _nonneg(name, getattr(self, name))

    @property
    def is_identity(self) -> bool:
        """True when every strength is 0."""
        return self.level_db == self.time_sigma == self.freq_sigma == self.noise_std == 0.0


def apply(
    mel: Any,
    config: MelConfig | str,
    degradation: Degradation,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> Any:
    """Apply a :class:`Degradation` to a compressed mel in one decode/encode pass.

    Parameters
    ----------
    mel : np.ndarray or torch.Tensor [shape=(..., n_mels, frames)]
        Compressed mel of ``config``.
    config : MelConfig or str
    degradation : Degradation
    seed, generator :
        For the noise (see :func:`add_log_noise`); unused without noise.

    Returns
    -------
    np.ndarray or torch.Tensor [shape=(..., n_mels, frames)]
        Compressed as ``mel``, of its kind and dtype; an unchanged copy when every strength is 0.
    """
    check(isinstance(degradation, Degradation), "degradation must be a melinvert.degrade.Degradation")
    t, was_numpy, dtype, cfg = _mel(mel, config)
    g = _generator(seed, generator)
    if degradation.is_identity:
        return to_output(t.clone(), was_numpy, dtype)
    log_mel = _to_log(t, cfg)
    if degradation.level_db:
        log_mel = log_mel + degradation.level_db * cfg.power / 20.0 * math.log(10.0)
    if degradation.time_sigma:
        log_mel = gaussian_blur(log_mel, degradation.time_sigma, dim=-1)
    if degradation.freq_sigma:
        log_mel = gaussian_blur(log_mel, degradation.freq_sigma, dim=-2)
    if degradation.noise_std:
        log_mel = log_mel + degradation.noise_std * _noise(log_mel, g)
    return to_output(_from_log(log_mel, cfg), was_numpy, dtype)


# ---------------------------------------------------------------------- masked mixtures


def mix_at_snr(speech: Any, interferer: Any, snr_db: float) -> tuple[Any, Any]:
    """Add an interferer to speech at a signal-to-noise ratio.

    Parameters
    ----------
    speech, interferer : np.ndarray or torch.Tensor [shape=(..., samples)]
        Same shape; an interferer too short must be tiled or cut by the caller.
    snr_db : float
        ``10 log10(sum speech**2 / sum scaled_interferer**2)`` of each item, in dB.

    Returns
    -------
    (mixture, scaled_interferer)
        Both shaped like ``speech``, of its kind and dtype.
    """
    snr = _finite("snr_db", snr_db)
    s, was_numpy, dtype = as_tensor(speech, name="speech")
    n, _, _ = as_tensor(interferer, name="interferer")
    check(s.shape == n.shape, f"speech shape {tuple(s.shape)} and interferer shape {tuple(n.shape)} differ")
    s, n = s.to(torch.float64), n.to(device=s.device, dtype=torch.float64)
    es = s.square().sum(-1, keepdim=True)
    en = n.square().sum(-1, keepdim=True)
    check(bool((es > 0).all()), "speech is silent (all zeros): the SNR is undefined")
    check(bool((en > 0).all()), "interferer is silent (all zeros): the SNR is undefined")
    scaled = n * torch.sqrt(es / (en * 10.0 ** (snr / 10.0)))
    return to_output(s + scaled, was_numpy, dtype), to_output(scaled, was_numpy, dtype)


def masked_mixture(
    mixture_mel: Any,
    speech_mel: Any,
    interferer_mel: Any,
    config: MelConfig | str,
    *,
    mask_floor: float = 0.0,
) -> Any:
    """An oracle enhancer's mel: the mixture's mel times a Wiener-like mel-domain ratio mask.

    With ``S`` and ``N`` the linear mels of the speech and the (scaled) interferer, converted
    to power (``S ** (2 / power)``), the mask is ``max(S^2 / (S^2 + N^2), mask_floor)`` and
    the result is ``encode(decode(mixture_mel) * mask ** (power / 2))``: the power-domain
    Wiener gain applied to the mixture's mel, which is not the mel of any waveform.

    Parameters
    ----------
    mixture_mel, speech_mel, interferer_mel : np.ndarray or torch.Tensor [shape=(..., n_mels, frames)]
        Compressed mels of ``config`` of the mixture and its two parts (see :func:`mix_at_snr`
        and :func:`oracle_masked_mel`), same shape.
    config : MelConfig or str
    mask_floor : float
        Lower bound of the mask in [0, 1] (an enhancer's maximum attenuation; 0 for none).

    Returns
    -------
    np.ndarray or torch.Tensor [shape=(..., n_mels, frames)]
        Compressed like ``mixture_mel``, of its kind and dtype.
    """
    check(
        isinstance(mask_floor, (int, float)) and not isinstance(mask_floor, bool) and 0 <= mask_floor <= 1,
        f"mask_floor={mask_floor!r} must be a number in [0, 1]",
    )
    mix, was_numpy, dtype, cfg = _mel(mixture_mel, config)
    parts = []
    for name, m in (("speech_mel", speech_mel), ("interferer_mel", interferer_mel)):
        t, _, _ = as_tensor(m, name=name)
        check(
            t.shape == mix.shape,
            f"{name} shape {tuple(t.shape)} differs from mixture_mel shape {tuple(mix.shape)}",
        )
        parts.append(
            cfg.compression.decode(t.to(device=mix.device, dtype=torch.float64)) ** (2.0 / cfg.power)
        )
    s2, n2 = parts
    den = s2 + n2
    mask = torch.where(den > 0, s2 / torch.where(den > 0, den, 1.0), 1.0).clamp(min=float(mask_floor))
    lin = cfg.compression.decode(mix.to(torch.float64)) * mask ** (cfg.power / 2.0)
    return to_output(cfg.compression.encode(lin), was_numpy, dtype)


def oracle_masked_mel(
    speech: Any,
    interferer: Any,
    config: MelConfig | str,
    snr_db: float,
    *,
    mask_floor: float = 0.0,
) -> Any:
    """The masked mel of speech mixed with an interferer at ``snr_db`` (:func:`masked_mixture`).

    Parameters
    ----------
    speech, interferer : np.ndarray or torch.Tensor [shape=(..., samples)]
        Audio at ``config.sample_rate``, same shape (another talker, or noise).
    config : MelConfig or str
    snr_db : float
        Speech-to-interferer ratio in dB (:func:`mix_at_snr`).
    mask_floor : float
        See :func:`masked_mixture`.

    Returns
    -------
    np.ndarray or torch.Tensor [shape=(..., n_mels, frames)]
        The compressed mel, of the kind and dtype of ``speech``.
    """
    cfg = resolve_config(config)
    mixture, scaled = mix_at_snr(speech, interferer, snr_db)
    s, was_numpy, dtype = as_tensor(speech, name="speech")
    check_length(s.shape[-1], cfg)
    mels = [
        cfg.compression.encode(linear_mel(torch.as_tensor(x).to(device=s.device, dtype=torch.float64), cfg))
        for x in (mixture, s, scaled)
    ]
    out = masked_mixture(mels[0], mels[1], mels[2], cfg, mask_floor=mask_floor)
    return to_output(out, was_numpy, dtype)
