"""melinvert.codecs: one codec class per compression kind, the registry, and range checks."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from helpers import harmonic_noise

import melinvert
from melinvert import codecs
from melinvert.codecs import CLAMP_DECADES, CODECS, Codec, RangeReport, codec_class, register_codec
from melinvert.config import COMPRESSIONS, Compression, MelConfig, get_preset
from melinvert.errors import MelinvertError


def _linear(shape: tuple[int, ...] = (6, 40), lo: float = -6.0, hi: float = 2.0, seed: int = 0) -> np.ndarray:
    """Log-uniform positive values 10**lo..10**hi, float64."""
    rng = np.random.default_rng(seed)
    return 10.0 ** rng.uniform(lo, hi, size=shape)


# ---------------------------------------------------------------------- formulas (float64)


def _reference(c: Compression, x: np.ndarray) -> np.ndarray:
    """The compression written out with numpy from its documented formula (one item)."""
    if c.kind == "none":
        return x
    if c.kind == "ln":
        return np.log(np.maximum(x, c.floor))
    if c.kind == "log10":
        return np.log10(np.maximum(x, c.floor))
    if c.kind == "log1p":
        return np.log1p(x)
    if c.kind == "db":
        v = c.multiplier * (np.log10(np.maximum(x, c.floor)) - np.log10(max(c.ref, c.floor)))
        return v if c.top_db is None else np.maximum(v, v.max() - c.top_db)
    if c.kind == "whisper":
        v = np.log10(np.maximum(x, c.floor))
        return (np.maximum(v, v.max() - 8.0) + 4.0) / 4.0
    db = c.multiplier * np.log10(np.maximum(x, c.floor)) - c.ref_level_db
    s = (db - c.min_level_db) / -c.min_level_db
    lo = -c.max_norm if c.symmetric else 0.0
    v = lo + s * (2 * c.max_norm if c.symmetric else c.max_norm)
    return np.clip(v, lo, c.max_norm) if c.clip_norm else v


FORMULA_CASES = [
    Compression(kind="none"),
    Compression(kind="ln", floor=1e-5),
    Compression(kind="log10", floor=1e-10),
    Compression(kind="log1p"),
    Compression(kind="db", multiplier=10.0, floor=1e-10),
    Compression(kind="db", multiplier=20.0, floor=1e-5, ref=3.0),
    Compression(kind="db", multiplier=10.0, floor=1e-10, top_db=60.0),
    Compression(kind="whisper", floor=1e-10),
    Compression(kind="coqui", floor=1e-8),
    Compression(kind="coqui", floor=1e-5, symmetric=False, max_norm=1.0),
    Compression(kind="coqui", floor=1e-5, clip_norm=False),
]


@pytest.mark.parametrize("comp", FORMULA_CASES, ids=lambda c: c.short())
def test_encode_matches_formula_and_decode_inverts(comp: Compression) -> None:
    x = _linear()
    got = comp.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _reference(comp, x), rtol=1e-12, atol=1e-12)
    back = comp.decode(torch.from_numpy(got)).numpy()
    assert (back >= 0).all()
    # Where nothing was clipped (floor, top_db, Whisper's range, Coqui's clip) decode inverts.
    kept = (x > comp.floor * 1.0001) & (got > got.min() + 1e-9)
    if comp.kind == "coqui":
        kept &= got < comp.max_norm - 1e-9
    assert kept.sum() > x.size // 3
    np.testing.assert_allclose(back[kept], x[kept], rtol=1e-11)


@pytest.mark.parametrize("comp", FORMULA_CASES, ids=lambda c: c.short())
def test_batch_equals_stacked_items(comp: Compression) -> None:
    x = torch.from_numpy(np.stack([_linear(seed=1), 1e-3 * _linear(seed=2)]))
    enc = comp.encode(x)
    for i in range(2):
        torch.testing.assert_close(enc[i], comp.encode(x[i]), rtol=0, atol=0)
    reports = [comp.check_range(enc[i]) for i in range(2)]
    assert comp.check_range(enc).error is None and all(r.error is None for r in reports)


def test_codec_floors_and_units() -> None:
    ln = Compression(kind="ln", floor=1e-5).codec
    assert ln.linear_floor == 1e-5 and ln.decade() == pytest.approx(math.log(10))
    assert ln.db_per_unit(1.0) == pytest.approx(20 / math.log(10), rel=1e-14)
    assert Compression(kind="log10").codec.db_per_unit(2.0) == 10.0
    assert Compression(kind="none").linear_floor is None and Compression(kind="log1p").linear_floor is None
    assert Compression(kind="whisper").codec.silence_below_max == 2.0
    assert Compression(kind="db", top_db=80.0).codec.silence_below_max == 80.0
    assert not Compression(kind="db").codec.data_dependent
    coqui = get_preset("coqui-22k-80").compression.codec
    # 100 dB spread over [-4, 4]: 12.5 dB per unit; a decade of the magnitude (20 dB) is 1.6
    assert coqui.db_per_unit(1.0) == 12.5 and coqui.decade() == pytest.approx(1.6)
    assert not Compression(kind="none").is_log and Compression(kind="log1p").is_log


def test_texts() -> None:
    shorts = {name: get_preset(name).compression.short() for name in melinvert.list_presets()}
    assert shorts["hifigan-22k-80"] == "ln 1e-5" and shorts["vocos-24k-100"] == "ln 1e-7"
    assert shorts["pwg-22k-80"] == "log10 1e-10" and shorts["whisper-16k-80"] == "whisper"
    assert shorts["coqui-22k-80"] == "coqui" and shorts["librosa-default"] == "none"
    assert Compression(kind="db", floor=1e-10, top_db=80.0).short() == "dB floor 1e-10 top 80"
    assert Compression(kind="db", floor=1e-5).short() == "dB floor 1e-05"
    assert Compression(kind="ln", floor=1e-5).describe() == "ln, floor 1e-5 (-11.513)"
    assert Compression(kind="log10", floor=1e-10).describe() == "log10, floor 1e-10 (-10)"
    assert get_preset("coqui-22k-80").compression.describe() == (
        "Coqui normalised dB in [-4, 4] (min_level_db -100)"
    )
    stats = Compression(kind="log10", mean=(0.0,), std=(1.0,))
    assert stats.describe().endswith(", standardised per bin (mean/std)")
    assert MelConfig(compression=Compression(kind="ln", floor=1e-5)).describe().endswith("ln floor 1e-05")


# ---------------------------------------------------------------------- registry


def test_registry_holds_every_kind() -> None:
    assert tuple(CODECS) == COMPRESSIONS
    for kind in COMPRESSIONS:
        codec = Compression(kind=kind).codec
        assert type(codec) is CODECS[kind] is codec_class(kind) and codec.kind == kind
        assert isinstance(codec, Codec)


class _SqrtCodec(Codec):
    """A test kind: ``sqrt(x)``."""

    kind = "sqrt"
    is_log = False

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(mel)

    def decode(self, values: torch.Tensor) -> torch.Tensor:
        return torch.clamp(values, min=0.0) ** 2

    def impossible(self, mel: torch.Tensor, lo: float, hi: float) -> str | None:
        return f"negative values (min {lo:.4g}) cannot be square roots" if lo < 0 else None


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codecs, "CODECS", dict(CODECS))


@pytest.mark.usefixtures("own_registry")
def test_register_codec_makes_a_new_kind_usable() -> None:
    with pytest.raises(MelinvertError, match=r"compression kind='sqrt' must be one of none, ln, .*, coqui$"):
        Compression(kind="sqrt")
    assert register_codec(_SqrtCodec) is _SqrtCodec
    comp = Compression(kind="sqrt")
    x = torch.tensor([[0.0, 4.0, 9.0]], dtype=torch.float64)
    assert comp.encode(x).tolist() == [[0.0, 2.0, 3.0]] and comp.decode(comp.encode(x)).tolist() == x.tolist()
    assert comp.silence_value() == 0.0 and comp.short() == "sqrt" and not comp.is_log
    with pytest.raises(MelinvertError, match=r"cannot be square roots"):
        comp.check_range(torch.tensor([[-1.0, 1.0]])).raise_for_error()
    cfg = MelConfig(compression=comp)
    assert MelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(MelinvertError, match=r"compression kind='cube' must be one of .*, sqrt$"):
        Compression(kind="cube")


@pytest.mark.usefixtures("own_registry")
def test_register_codec_errors() -> None:
    with pytest.raises(MelinvertError, match=r"a codec for kind 'ln' is already registered"):
        register_codec(type("Ln2", (Codec,), {"kind": "ln"}))
    register_codec(type("Ln2", (Codec,), {"kind": "ln"}), replace=True)
    assert codecs.CODECS["ln"] is not codecs.LnCodec and codecs.CODECS["ln"].__name__ == "Ln2"
    assert CODECS["ln"] is codecs.LnCodec  # the fixture's copy: the module's own dict is untouched
    with pytest.raises(MelinvertError, match=r"is not a Codec subclass"):
        register_codec(int)  # type: ignore[arg-type]
    with pytest.raises(MelinvertError, match=r"codec Bad needs a kind name, got ''"):
        register_codec(type("Bad", (Codec,), {}))
    with pytest.raises(MelinvertError, match=r"compression kind=\['ln'\] must be one of"):
        codec_class(["ln"])


def test_registry_restored_after_fixture() -> None:
    assert codecs.CODECS["ln"] is codecs.LnCodec and "sqrt" not in codecs.CODECS


# ---------------------------------------------------------------------- range checks


@pytest.fixture(scope="module")
def speech_mel() -> torch.Tensor:
    """A HiFi-GAN ln mel (float64) of harmonics plus noise with digital silence at both ends."""
    cfg = get_preset("hifigan-22k-80")
    y = harmonic_noise(cfg.sample_rate, 1.0)
    y[:4000] = 0.0
    y[-4000:] = 0.0
    return torch.from_numpy(melinvert.mel_spectrogram(y, cfg))


def test_noisy_mel_is_clamped_with_a_notice(speech_mel: torch.Tensor) -> None:
    comp = get_preset("hifigan-22k-80").compression
    floor = math.log(1e-5)
    rng = np.random.default_rng(0)
    noisy = speech_mel + torch.from_numpy(0.3 * rng.standard_normal(speech_mel.shape))
    below = noisy < floor
    n = int(below.sum())
    assert 0.05 * noisy.numel() < n < 0.5 * noisy.numel()  # the silence and the quiet bins
    lowest = float(noisy.min())
    assert floor - math.log(10) < lowest < floor - 0.5  # within a decade: clamped, not refused
    report = comp.check_range(noisy)
    assert report.error is None and report.clamped == n and report.total == noisy.numel()
    expected = (
        f"clamped {n:,} of {noisy.numel():,} values ({100 * n / noisy.numel():.2g}%) "
        f"below the ln floor -11.51, down to {lowest:.4g}"
    )
    assert report.notice == expected
    assert re.fullmatch(
        r"clamped [\d,]+ of [\d,]+ values \([\d.]+%\) below the ln floor -11\.51, down to -1[23]\.\d+",
        report.notice,
    )
    torch.testing.assert_close(
        report.mel[below], torch.full((n,), floor, dtype=torch.float64), rtol=0, atol=0
    )
    torch.testing.assert_close(report.mel[~below], noisy[~below], rtol=0, atol=0)
    assert report.raise_for_error() is report.mel
    # strict mode and range_problem refuse the same values, with the old wording
    strict = comp.check_range(noisy, strict=True)
    assert strict.notice is None and strict.mel is noisy
    with pytest.raises(
        MelinvertError,
        match=r"mel does not fit the config: values down to -1[23]\.\d+, "
        r"below the ln floor -11\.51 this config produces; wrong preset or compression\?",
    ):
        strict.raise_for_error()
    assert comp.range_problem(noisy) == strict.error


def test_float16_mel_is_in_range(speech_mel: torch.Tensor) -> None:
    comp = get_preset("hifigan-22k-80").compression
    half = speech_mel.half()
    assert float(half.min()) < math.log(1e-5) - 1e-3  # -11.5156: rounded below the floor
    for mel in (half, half.float(), half.double()):
        report = comp.check_range(mel, strict=True)
        assert report.error is None and report.notice is None and report.clamped == 0
        assert report.mel is mel
    assert comp.check_range(speech_mel.to(torch.bfloat16)).notice is None


def test_values_far_below_the_floor_are_an_error(tone) -> None:
    """A Vocos mel (floor ln 1e-7) for BigVGAN (ln 1e-5): two decades too deep, not noise."""
    vocos = torch.from_numpy(melinvert.mel_spectrogram(tone(24000), "vocos-24k-100"))
    comp = get_preset("bigvgan-24k-100").compression
    report = comp.check_range(vocos)
    assert report.notice is None and report.mel is vocos
    with pytest.raises(MelinvertError, match=r"values down to -16\.12, below the ln floor -11\.51"):
        report.raise_for_error()
    # exactly CLAMP_DECADES deep is still clamped; a little deeper is not
    floor = math.log(1e-5)
    edge = torch.tensor([[floor - CLAMP_DECADES * math.log(10) + 1e-9, 0.0]], dtype=torch.float64)
    assert comp.check_range(edge).clamped == 1
    edge[0, 0] -= 1e-3
    assert "below the ln floor" in comp.check_range(edge).error


def test_other_codecs_clamp_small_excursions() -> None:
    db = Compression(kind="db", multiplier=10.0, floor=1e-10)
    r = db.check_range(torch.tensor([[-104.0, -100.0, 3.0]], dtype=torch.float64))
    assert r.notice == "clamped 1 of 3 values (33%) below the db floor -100, down to -104"
    assert r.mel.tolist() == [[-100.0, -100.0, 3.0]]
    assert "below the db floor -100" in db.check_range(torch.tensor([[-120.0, 0.0]])).error
    coqui = get_preset("coqui-22k-80").compression
    r = coqui.check_range(torch.tensor([[-4.5, 0.0, 4.25]], dtype=torch.float64))
    assert r.notice == (
        "clamped 2 of 3 values (67%) outside Coqui's normalised range [-4, 4], down to -4.5 and up to 4.25"
    )
    assert r.mel.tolist() == [[-4.0, 0.0, 4.0]]
    with pytest.raises(MelinvertError, match=r"values in \[-6, 0\] fall outside Coqui's normalised range"):
        coqui.check_range(torch.tensor([[-6.0, 0.0]])).raise_for_error()
    whisper = Compression(kind="whisper")
    items = torch.tensor([[[0.0, 1.0, -1.1]], [[0.5, -0.5, -1.55]]], dtype=torch.float64)
    r = whisper.check_range(items)
    assert r.clamped == 2 and r.mel.tolist() == [[[0.0, 1.0, -1.0]], [[0.5, -0.5, -1.5]]]
    assert r.notice == (
        "clamped 2 of 6 values (33%) below Whisper's floor (2.0 under each item's maximum), 0.1 under it"
    )
    with pytest.raises(MelinvertError, match=r"values span 2\.1, more than the 2\.0 Whisper's encoding"):
        whisper.check_range(items, strict=True).raise_for_error("bad")


@pytest.mark.parametrize(
    ("comp", "values", "match"),
    [
        (
            Compression(kind="ln"),
            [[0.5, 2.0]],
            r"all values are >= 0 .* looks like a linear mel, but the config "
            r"expects a ln-compressed mel",
        ),
        (Compression(kind="log10"), [[0.0, 1.0]], r"looks like a linear mel"),
        (
            Compression(kind="none"),
            [[-11.5, -2.0]],
            r"negative values \(min -11\.5\) in a mel whose config "
            r"expects a linear mel",
        ),
        (Compression(kind="log1p"), [[-0.5, 1.0]], r"negative values \(min -0\.5\) are impossible for log1p"),
        (Compression(kind="ln"), [[float("nan"), -3.0]], r"1 of 2 values are NaN or Inf"),
        (Compression(kind="none"), [[float("inf"), 1.0]], r"1 of 2 values are NaN or Inf"),
        (Compression(kind="log10", mean=(0.0,), std=(1.0,)), [[float("nan"), 1.0]], r"NaN or Inf"),
        (Compression(kind="ln"), torch.zeros(0, 3), r"the mel is empty"),
        (Compression(kind="log10", mean=(0.0,), std=(1.0,)), torch.zeros(1, 0), r"the mel is empty"),
    ],
)
def test_impossible_input_is_an_error_even_when_not_strict(comp: Compression, values, match: str) -> None:
    mel = values if isinstance(values, torch.Tensor) else torch.tensor(values)
    report = comp.check_range(mel)
    assert report.notice is None and report.clamped == 0
    with pytest.raises(MelinvertError, match=rf"^mel does not fit the config: (.* )?{match}"):
        report.raise_for_error()


def test_standardised_values_are_not_range_checked() -> None:
    comp = Compression(kind="log10", mean=(0.0,), std=(1.0,))
    mel = torch.tensor([[-50.0, 50.0]])
    report = comp.check_range(mel, strict=True)
    assert report == RangeReport(mel, total=2) and comp.range_problem(mel) is None


def test_genuine_mels_pass_unchanged(tone) -> None:
    for name in melinvert.list_presets():
        cfg = get_preset(name)
        mel = torch.from_numpy(melinvert.mel_spectrogram(tone(cfg.sample_rate), cfg))
        for m in (mel, mel.float()):
            report = cfg.compression.check_range(m, strict=True)
            assert report.error is None and report.notice is None and report.mel is m, name
