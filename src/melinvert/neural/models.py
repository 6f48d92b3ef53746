"""The learned models: a mel -> magnitude refiner, Deep Griffin-Lim and a CNN vocoder.

Each model is a plain :class:`torch.nn.Module` built from a :class:`~melinvert.config.MelConfig`
and a dict of hyperparameters (every size comes from the config: ``n_mels``, ``n_freqs``,
``hop_length``, never a literal 80 or 513). Fixed tensors derived from the config (the
filterbank's pseudo-inverse) are non-persistent buffers, so ``.to(device)`` moves them and the
checkpoints hold only what was learned (weights and the input statistics).

Shapes: mels ``(B, n_mels, frames)`` LINEAR (the config's compression undone), magnitudes
``(B, n_freqs, frames)``, complex spectra ``(B, frames, n_freqs)`` in the phase stage's layout,
audio ``(B, samples)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MelConfig
from ..errors import check
from ..registry import DEFAULT_METHOD

# ---------------------------------------------------------------------- shared pieces


def log_floor(config: MelConfig) -> float:
    """Clamp applied to a linear mel before its logarithm (the mel's own units).

    The config's compression floor for the logarithmic kinds (so the model sees what the
    compressed mel kept), otherwise ``1e-5`` raised to the config's power.
    """
    floor = config.compression.linear_floor
    return floor if floor is not None else 1e-5**config.power


class MelInput(nn.Module):
    """``ln(max(mel, floor))`` standardised per mel bin with statistics of the training data.

    Parameters
    ----------
    n_mels : int
    floor : float
        See :func:`log_floor`.
    """

    def __init__(self, n_mels: int, floor: float):
        super().__init__()
        self.floor = floor
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    @torch.no_grad()
    def fit(self, mel: torch.Tensor) -> None:
        """Set the statistics from linear mels ``(B, n_mels, frames)``."""
        x = torch.log(mel.clamp_min(self.floor)).transpose(0, 1).reshape(mel.shape[1], -1)
        self.mean.copy_(x.mean(dim=1))
        self.std.copy_(x.std(dim=1).clamp_min(1e-3))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = torch.log(mel.clamp_min(self.floor))
        return (x - self.mean[:, None]) / self.std[:, None]


class ResBlock1d(nn.Module):
    """``x + W2 act(W1 act(x))``: a dilated ``kernel``-wide convolution then a 1x1 one."""

    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel // 2))
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(F.leaky_relu(x, 0.1))
        return x + self.mix(F.leaky_relu(h, 0.1))


def count_parameters(model: nn.Module) -> int:
    """Number of learned parameters."""
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------- refiner


REFINER_DEFAULTS: dict[str, Any] = {
    "channels": 192,
    "dilations": [1, 2, 4, 8, 1, 2],
    "kernel": 3,
    "fine_hz": 2000.0,
    "fine_channels": 16,
    "fine_dilations": [1, 2, 4, 8],
}


class FineHead(nn.Module):
    """A 2-D convolutional head over (bins, frames) that sharpens the low band.

    Harmonics are evenly spaced in linear frequency, so one small translation-equivariant
    network learns to restore them at every bin: convolutions 5 bins wide, dilated along
    frequency (``dilations``), frame by frame, on the current log magnitude (minus its mean
    over the band), a bin-position channel and ``cond`` channels broadcast from the time
    network (pitch, voicing and the time context live there). Its output, a log-magnitude
    correction, starts at zero.
    """

    def __init__(self, n_bins: int, cond: int, channels: int, dilations: list[int]):
        super().__init__()
        self.n_bins = n_bins
        self.register_buffer(
            "position", torch.linspace(-1.0, 1.0, n_bins).reshape(1, 1, n_bins, 1), persistent=False
        )
        layers = []
        c_in = 2 + cond
        for d in dilations:
            layers.append(nn.Conv2d(c_in, channels, (5, 1), dilation=(d, 1), padding=(2 * d, 0)))
            c_in = channels
        self.layers = nn.ModuleList(layers)
        self.out = nn.Conv2d(channels, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, logmag: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``logmag (B, n_bins, T)``, ``cond (B, c, T)`` -> correction ``(B, n_bins, T)``."""
        b, f, t = logmag.shape
        centred = logmag - logmag.mean(dim=1, keepdim=True)
        feats = [
            centred.unsqueeze(1),
            self.position.expand(b, 1, f, t),
            cond.unsqueeze(2).expand(-1, -1, f, -1),
        ]
        h = torch.cat(feats, dim=1)
        for conv in self.layers:
            h = F.leaky_relu(conv(h), 0.1)
        return self.out(h).squeeze(1)


class Refiner(nn.Module):
    """Mel -> linear magnitude: the clipped pseudo-inverse, corrected in the log domain.

    A time network -- an encoder (a ``5``-frame convolution from the standardised log-mel to
    ``channels``), dilated residual blocks over time (context ``2 + sum(dilations)`` frames
    each side) and a 1x1 decoder to ``n_freqs`` channels -- predicts ``delta``; the estimate
    is ``ln(max(pinv(mel), floor)) + delta``. Below ``fine_hz`` a :class:`FineHead` then adds a
    correction that restores the harmonic fine structure the mel blurred (the band where
    errors cost the most, measured: a true magnitude below 1 kHz alone lifts PESQ by 0.25).
    Both corrections start at zero, so an untrained refiner returns the pseudo-inverse.

    Parameters
    ----------
    config : MelConfig
    channels : int
        Width of the time network.
    dilations : list of int
        One residual block per entry.
    kernel : int
        Odd width of the dilated convolutions.
    fine_hz : float
        Upper edge of the fine head's band in Hz (0: no fine head).
    fine_channels : int
    fine_dilations : list of int
        One (5 x 3) layer per entry, dilated along frequency.
    """

    def __init__(
        self,
        config: MelConfig,
        *,
        channels: int = 192,
        dilations: list[int] | None = None,
        kernel: int = 3,
        fine_hz: float = 2000.0,
        fine_channels: int = 16,
        fine_dilations: list[int] | None = None,
    ):
        super().__init__()
        from ..magnitude import pinv_matrix

        dilations = list(REFINER_DEFAULTS["dilations"] if dilations is None else dilations)
        fine_dilations = list(
            REFINER_DEFAULTS["fine_dilations"] if fine_dilations is None else fine_dilations
        )
        check(channels >= 1 and kernel % 2 == 1, f"refiner {channels=} must be >= 1 and {kernel=} odd")
        check(fine_hz >= 0, f"refiner {fine_hz=} must be >= 0")
        self.power = float(config.power)
        self.floor = log_floor(config)
        self.mag_floor = self.floor ** (1.0 / self.power)
        self.inp = MelInput(config.n_mels, self.floor)
        self.register_buffer(
            "pinv", pinv_matrix(config, dtype=torch.float32, device=torch.device("cpu")), persistent=False
        )
        self.enc = nn.Conv1d(config.n_mels, channels, 5, padding=2)
        self.blocks = nn.ModuleList(ResBlock1d(channels, kernel, d) for d in dilations)
        self.dec = nn.Conv1d(channels, config.n_freqs, 1)
        nn.init.zeros_(self.dec.weight)
        nn.init.zeros_(self.dec.bias)
        n_fine = min(config.n_freqs, math.ceil(fine_hz * config.n_fft / config.sample_rate))
        self.n_fine = n_fine if fine_hz > 0 and fine_channels > 0 and fine_dilations else 0
        if self.n_fine:
            self.cond = nn.Conv1d(channels, 4, 1)
            self.fine = FineHead(self.n_fine, 4, fine_channels, fine_dilations)

    def prior(self, mel: torch.Tensor) -> torch.Tensor:
        """The clipped pseudo-inverse magnitude ``(B, n_freqs, frames)``."""
        p = (self.pinv @ mel).clamp_min(0.0)
        return p if self.power == 1 else p.pow(1.0 / self.power)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Log magnitude ``(B, n_freqs, frames)`` (natural log) of linear mels ``(B, n_mels, frames)``."""
        h = self.enc(self.inp(mel))
        for b in self.blocks:
            h = b(h)
        a = F.leaky_relu(h, 0.1)
        out = torch.log(self.prior(mel).clamp_min(self.mag_floor)) + self.dec(a)
        if self.n_fine:
            k = self.n_fine
            low = out[:, :k] + self.fine(out[:, :k], self.cond(a))
            out = torch.cat([low, out[:, k:]], dim=1)
        return out


# ---------------------------------------------------------------------- Deep Griffin-Lim


DEGLI_DEFAULTS: dict[str, Any] = {"channels": 16, "kernel": [3, 5], "layers": 2}


class DeGLINet(nn.Module):
    """The network inside each Deep Griffin-Lim iteration (Masuyama et al. 2021), scaled down,
    on fast Griffin-Lim's momentum step.

    One iteration of :func:`melinvert.neural.stages.degli` projects the iterate ``X`` onto the
    magnitude set (``A``, re-fitted to the mel) and the consistent spectrograms, ``C = P_C(P_A(X))``,
    takes fast Griffin-Lim's momentum step ``T = C + alpha (C - C_prev)`` and subtracts this
    network's residual: ``X <- T - net(X, C, T, A)``. The inputs are made level-free bin by bin,
    so that quiet and loud bins look alike: the phasor ``X / |X|``, ``C / A``, ``T / A``,
    ``|C| / A`` and ``ln A`` relative to the item's peak; ``layers`` gated (GLU) 2-D convolutions
    over (frames, bins) of ``channels`` channels and a 1x1 output give the residual in units of
    ``A``. The output layer starts at zero, so an untrained network is exactly fast Griffin-Lim
    (``mfgla`` with the re-fit), which training can only move from where it helps.

    Parameters
    ----------
    config : MelConfig
        Unused for sizes (the network is convolutional over both axes); kept for symmetry.
    channels : int
    kernel : list of two int
        Odd (frames, bins) kernel size.
    layers : int
    """

    n_features = 8

    def __init__(
        self,
        config: MelConfig,
        *,
        channels: int = 16,
        kernel: list[int] | None = None,
        layers: int = 2,
    ):
        super().__init__()
        k = tuple(DEGLI_DEFAULTS["kernel"] if kernel is None else kernel)
        check(len(k) == 2 and all(v % 2 == 1 for v in k), f"degli kernel={list(k)} must be two odd sizes")
        check(layers >= 1 and channels >= 1, f"degli {layers=} and {channels=} must be >= 1")
        pad = (k[0] // 2, k[1] // 2)
        convs = []
        c_in = self.n_features
        for _ in range(layers):
            convs.append(nn.Conv2d(c_in, 2 * channels, k, padding=pad))
            c_in = channels
        self.convs = nn.ModuleList(convs)
        self.out = nn.Conv2d(channels, 2, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, t: torch.Tensor, amp: torch.Tensor) -> torch.Tensor:
        """Residual ``(B, T, F)`` complex to subtract from ``t``, from the iterate ``x``, its
        consistent projection ``c``, the momentum step ``t`` (complex) and the amplitude ``amp``
        (real), all ``(B, T, F)``."""
        peak = amp.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        a = amp.clamp_min(1e-6 * peak)
        px = x / x.abs().clamp_min(1e-12 * peak)
        pc = c / a
        pt = t / a
        lvl = torch.log(a / peak) / 5.0 + 1.0
        feats = torch.stack(
            [
                px.real,
                px.imag,
                pc.real,
                pc.imag,
                pt.real.clamp(-10, 10),
                pt.imag.clamp(-10, 10),
                (c.abs() / a).clamp_max(10.0),
                lvl,
            ],
            dim=1,
        )
        h = feats
        for conv in self.convs:
            h = F.glu(conv(h), dim=1)
        r = self.out(h)
        return torch.complex(r[:, 0], r[:, 1]) * amp


def degli_update(
    net: nn.Module, x: torch.Tensor, c: torch.Tensor, c_prev: torch.Tensor, amp: torch.Tensor, alpha: float
) -> torch.Tensor:
    """The next Deep Griffin-Lim iterate: ``T - net(X, C, T, A)`` with ``T = C + alpha (C - C_prev)``.

    ``x`` the iterate ``(B, T, F)`` complex, ``c`` the consistent projection of ``P_A(x)``,
    ``c_prev`` the previous one, ``amp`` the amplitude ``A`` (real). The network runs in float32;
    the result has ``c``'s dtype.
    """
    t = c + alpha * (c - c_prev)
    cdt = torch.complex64
    r = net(x.to(cdt), c.to(cdt), t.to(cdt), amp.float())
    return t - r.to(t.dtype)


# ---------------------------------------------------------------------- CNN vocoder


#: The training-free pipeline whose waveform the CNN vocoder corrects (``default``'s steps).
CNN_VOCODER_PRIOR = DEFAULT_METHOD

CNN_VOCODER_DEFAULTS: dict[str, Any] = {
    "channels": 256,
    "min_channels": 32,
    "pre_blocks": 3,
    "post_blocks": 3,
    "prior": CNN_VOCODER_PRIOR,
}


def hop_factors(hop: int, max_stages: int = 4) -> list[int]:
    """Split ``hop`` into at most ``max_stages`` upsampling factors, as even as the primes allow.

    ``256 -> [4, 4, 4, 4]``, ``300 -> [5, 5, 4, 3]``, ``160 -> [5, 4, 4, 2]`` (largest first).
    """
    primes = []
    n, p = hop, 2
    while n > 1:
        while n % p == 0:
            primes.append(p)
            n //= p
        p += 1
    stages = [1] * min(max_stages, max(1, len(primes)))
    for q in sorted(primes, reverse=True):
        i = min(range(len(stages)), key=lambda j: stages[j])
        stages[i] *= q
    return sorted(stages, reverse=True)


class CNNVocoder(nn.Module):
    """Mel + a training-free waveform -> a better waveform, after M-CNN (Arik, Jun & Diamos 2018).

    The mel goes through residual blocks at the frame rate, then one stage per factor of
    ``hop_length`` (:func:`hop_factors`): nearest-neighbour repetition by the factor followed by
    a convolution ``2 * factor + 1`` taps wide (no transposed convolutions, so no checkerboard
    artefacts), halving the channels each time (not below ``min_channels``). At the audio rate
    the waveform of the training-free pipeline ``prior`` (a method string; it runs before this
    stage) joins through a 15-tap convolution; residual blocks and a 7-tap output convolution
    give a correction that is added to that waveform. The output layer starts at zero, so an
    untrained vocoder returns ``prior``'s waveform, and training learns what it lacks (a CNN
    that must learn phase from nothing does not train on a CPU in an hour: 1.1 PESQ-WB, see
    ``docs/models/learned-stages.md``).

    Parameters
    ----------
    config : MelConfig
    channels : int
        Channels at the frame rate.
    min_channels : int
        Fewest channels after an upsampling stage (the audio rate's width).
    pre_blocks, post_blocks : int
        Residual blocks before and after the upsampling.
    prior : str
        The method whose waveform is corrected (recorded with the weights).
    """

    def __init__(
        self,
        config: MelConfig,
        *,
        channels: int = 256,
        min_channels: int = 32,
        pre_blocks: int = 3,
        post_blocks: int = 3,
        prior: str = CNN_VOCODER_PRIOR,
    ):
        super().__init__()
        check(isinstance(prior, str) and prior.strip() != "", f"cnn_vocoder prior={prior!r} must be a method")
        check(
            channels >= 1 and min_channels >= 1, f"cnn_vocoder {channels=} and {min_channels=} must be >= 1"
        )
        self.prior = prior
        self.inp = MelInput(config.n_mels, log_floor(config))
        self.hop = config.hop_length
        self.factors = hop_factors(config.hop_length)
        self.enc = nn.Conv1d(config.n_mels, channels, 5, padding=2)
        self.pre = nn.ModuleList(ResBlock1d(channels, 3, 3**i) for i in range(pre_blocks))
        ups = []
        c = channels
        for f in self.factors:
            c_out = max(min_channels, c // 2)
            ups.append(nn.Conv1d(c, c_out, 2 * f + 1, padding=f))
            c = c_out
        self.ups = nn.ModuleList(ups)
        self.wave = nn.Conv1d(1, c, 15, padding=7)
        self.post = nn.ModuleList(ResBlock1d(c, 7, 3**i) for i in range(post_blocks))
        self.out = nn.Conv1d(c, 1, 7, padding=3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, mel: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """Audio ``(B, samples)`` from linear mels ``(B, n_mels, frames)`` and the prior's waveform
        ``(B, samples)`` (samples past the last frame's hop take that frame's features)."""
        n = prior.shape[-1]
        h = self.enc(self.inp(mel))
        for b in self.pre:
            h = b(h)
        for f, conv in zip(self.factors, self.ups):
            h = F.interpolate(h, scale_factor=f, mode="nearest")
            h = conv(F.leaky_relu(h, 0.1))
        # repetition put frame t on samples [t hop, (t + 1) hop); its STFT frame is centred on t hop
        half = self.hop // 2
        h = F.pad(h, (0, max(0, half + n - h.shape[-1])), mode="replicate")[..., half : half + n]
        h = h + self.wave(prior.unsqueeze(1))
        for b in self.post:
            h = b(h)
        return prior + self.out(F.leaky_relu(h, 0.1)).squeeze(1)


MODEL_CLASSES: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "refiner": (Refiner, REFINER_DEFAULTS),
    "degli": (DeGLINet, DEGLI_DEFAULTS),
    "cnn_vocoder": (CNNVocoder, CNN_VOCODER_DEFAULTS),
}


def build_model(kind: str, config: MelConfig, hparams: dict[str, Any]) -> nn.Module:
    """Build an untrained model of ``kind`` for ``config`` with ``hparams`` (defaults filled in)."""
    check(kind in MODEL_CLASSES, f"unknown model {kind!r}; known: {', '.join(MODEL_CLASSES)}")
    cls, defaults = MODEL_CLASSES[kind]
    unknown = sorted(set(hparams) - set(defaults))
    check(
        not unknown, f"unknown {kind} hyperparameter(s): {', '.join(unknown)}; known: {', '.join(defaults)}"
    )
    return cls(config, **{**defaults, **hparams})
