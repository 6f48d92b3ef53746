"""Mel spectrograms of long audio block by block, in memory bounded by the mel itself.

:func:`linear_mel_blocks` frames a stream of audio chunks exactly as
:func:`melinvert.dsp.mel_spectrogram` frames the whole signal: the config's padding (reflect or
zeros) is added at the two ends of the stream only, and each block of frames is computed from
the samples it covers, so its frames equal the whole signal's (bit for bit in float64; to
rounding in float32, where the matrix product may be blocked differently).
:func:`mel_of_chunks` assembles the compressed mel (compressions that depend on the whole
item, such as Whisper's "8 below the maximum", are applied once at the end) and
:func:`mel_of_file` reads an audio file through :class:`melinvert.io.AudioBlocks`.

Memory: the audio is held a block at a time (plus ``n_fft`` samples of overlap) and the STFT a
block of frames at a time; the mel itself is held (about a 3.5th of the float32 audio for
80 mels and hop 256), as :func:`melinvert.pipeline.invert_blocks` holds it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .config import MelConfig, resolve_config
from .dsp import check_length, linear_mel, resolve_device
from .errors import MelinvertError, check


class _PaddedStream:
    """The config's padded signal, held from the first frame not yet computed."""

    def __init__(self, config: MelConfig):
        self.pad, self.hop, self.n_fft = config.pad, config.hop_length, config.n_fft
        self.reflect = config.pad_mode == "reflect"
        self.buf = np.zeros(0, np.float32)
        self.base = 0  # padded-signal index of buf[0]
        self.samples = 0  # audio samples received
        self.started = False
        self._pending: list[np.ndarray] = []

    def add(self, chunk: np.ndarray) -> None:
        self.samples += chunk.shape[0]
        if self.started:
            self.buf = np.concatenate([self.buf, chunk])
            return
        self._pending.append(chunk)
        if self.samples > self.pad:  # reflect padding needs x[pad]
            x = np.concatenate(self._pending)
            self._pending = []
            left = x[1 : self.pad + 1][::-1] if self.reflect else np.zeros(self.pad, x.dtype)
            self.buf, self.started = np.concatenate([left, x]), True

    def finish(self) -> None:
        """Add the right padding (the stream has ended)."""
        check(
            self.started,
            f"audio has {self.samples} samples, too few for the {self.pad} samples of padding each side",
        )
        right = self.buf[-self.pad - 1 : -1][::-1] if self.reflect else np.zeros(self.pad, self.buf.dtype)
        self.buf = np.concatenate([self.buf, right])

    def frames_ready(self) -> int:
        """Frames (from the first one) whose samples are all held or were."""
        end = self.base + self.buf.shape[0]
        return max((end - self.n_fft) // self.hop + 1, 0) if self.started else 0

    def segment(self, f0: int, f1: int) -> np.ndarray:
        """The padded samples frames ``f0 .. f1 - 1`` cover."""
        return self.buf[f0 * self.hop - self.base : (f1 - 1) * self.hop + self.n_fft - self.base]

    def drop_before(self, frame: int) -> None:
        """Forget the samples before ``frame`` (keeping the last ``pad + 1`` for the right padding)."""
        end = self.base + self.buf.shape[0]
        start = min(frame * self.hop, end - self.pad - 1)
        if start > self.base:
            self.buf = self.buf[start - self.base :].copy()
            self.base = start


def linear_mel_blocks(
    chunks: Iterable[np.ndarray],
    config: MelConfig | str,
    *,
    block_frames: int = 2048,
    device: str | torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """Uncompressed mel of a stream of audio chunks, a block of frames at a time.

    Parameters
    ----------
    chunks : iterable of np.ndarray [shape=(samples,), float32 or float64]
        Consecutive pieces of one signal at ``config.sample_rate``, of any sizes.
    config : MelConfig or str
    block_frames : int
        Frames per block (the last one may have fewer).
    device : str or torch.device, optional
        Where to compute (``"auto"``: CUDA if available); default the CPU.

    Yields
    ------
    torch.Tensor [shape=(n_mels, frames), on the CPU, the chunks' dtype]
        Consecutive frames of :func:`melinvert.dsp.linear_mel` of the whole signal, the last
        frame included even with ``drop_last_frame`` (:func:`mel_of_chunks` drops it).
    """
    cfg = resolve_config(config)
    check(isinstance(block_frames, int) and block_frames >= 1, f"{block_frames=} must be an integer >= 1")
    dev = resolve_device(device)
    framing = cfg.replace(padding="none", drop_last_frame=False)  # frames of a padded segment
    stream = _PaddedStream(cfg)
    done = 0

    def block(f0: int, f1: int) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(stream.segment(f0, f1))).to(dev)
        return linear_mel(x, framing).cpu()

    for chunk in chunks:
        stream.add(np.asarray(chunk).reshape(-1))
        while stream.frames_ready() - done >= block_frames:
            yield block(done, done + block_frames)
            done += block_frames
        stream.drop_before(done)
    check_length(stream.samples, cfg)
    stream.finish()
    total = 1 + (stream.samples + 2 * cfg.pad - cfg.n_fft) // cfg.hop_length
    while done < total:
        end = min(done + block_frames, total)
        yield block(done, end)
        done = end


def mel_of_chunks(
    chunks: Iterable[np.ndarray],
    config: MelConfig | str,
    *,
    block_frames: int = 2048,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """The compressed mel of a stream of audio chunks, as :func:`melinvert.dsp.mel_spectrogram`
    computes it for the whole signal.

    Returns
    -------
    np.ndarray [shape=(n_mels, frames), the chunks' dtype]
    """
    cfg = resolve_config(config)
    blocks = list(linear_mel_blocks(chunks, cfg, block_frames=block_frames, device=device))
    lin = torch.cat(blocks, dim=-1)
    del blocks
    if cfg.drop_last_frame:
        lin = lin[..., :-1]
    return cfg.compression.encode(lin).numpy()


@dataclass
class FileMel:
    """A file's mel and what was learnt reading it (:func:`mel_of_file`).

    Attributes
    ----------
    mel : np.ndarray [shape=(n_mels, frames), float32]
    samples : int
        Audio samples at ``sample_rate`` (the length to invert to).
    sample_rate : int
        Hz (the config's).
    notices : list of str
        Channels mixed down, resampling.
    head : np.ndarray [shape=(min(head_samples, samples),), float32]
        The first samples of the audio, as read (for scoring an excerpt).
    """

    mel: np.ndarray
    samples: int
    sample_rate: int
    notices: list[str]
    head: np.ndarray


def mel_of_file(
    path: str | os.PathLike,
    config: MelConfig | str,
    *,
    device: str | torch.device | None = None,
    head_samples: int = 0,
    block_frames: int = 2048,
) -> FileMel:
    """The mel of an audio file, read and computed block by block (see the module).

    Equal to ``mel_spectrogram(load_audio(path, config.sample_rate)[0], config)``, bit for bit
    where the STFT's matrix product is not blocked differently (float32 rounding otherwise).
    """
    from .io import AudioBlocks

    cfg = resolve_config(config)
    audio = AudioBlocks(path, cfg.sample_rate, block_samples=max(cfg.hop_length * block_frames, 1 << 16))
    head: list[np.ndarray] = []
    kept = 0

    def chunks() -> Iterator[np.ndarray]:
        nonlocal kept
        for y in audio:
            if kept < head_samples:
                head.append(y[: head_samples - kept].copy())
                kept += head[-1].shape[0]
            yield y

    try:
        mel = mel_of_chunks(chunks(), cfg, block_frames=block_frames, device=device)
    except MelinvertError as e:  # a length problem: name the file
        if not str(e).startswith("audio has "):
            raise
        n = str(e)[len("audio has ") :].split(" ", 1)
        raise MelinvertError(
            f"{os.fspath(path)!r} has {n[0]} samples at {cfg.sample_rate} Hz{n[1][len('samples') :]}"
        ) from None
    first = np.concatenate(head) if head else np.zeros(0, np.float32)
    return FileMel(mel, audio.samples, cfg.sample_rate, audio.notices, first)
