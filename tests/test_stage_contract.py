"""The stage contract: one registry, one signature, one progress mechanism, identical outputs.

- every named pipeline gives the audio it gave before the stage registry (recorded in
  tests/data/pipelines_recorded.npz from the code before it, float64, seed 0; ``stft_gd``
  re-recorded when NNLS's filterbank products moved to a CSR copy: sums in another order change
  its stage 1 at 1e-16, which its Adam steps amplify to 8e-6 on an output of RMS 0.2; every
  other pipeline still within 3e-8 of the first recording; ``fast`` re-recorded when its stage 1
  became the pseudo-inverse, which measured better than 10 NNLS iterations before its 6
  re-fitted Griffin-Lim iterations: PESQ-WB 3.713 vs 3.672 on the 10 development clips;
  ``default`` and the pipelines built on it (``stft_gd``, ``wave_lbfgs``, ``joint``) re-recorded
  when ``default``'s ``magla`` took momentum 0.9 for mels ``sharpen`` leaves as given;
  ``learned`` re-recorded when its refiner was retrained on predicted-mel families);
- progress events count exactly the iterations each step runs, stage 1 included;
- an interrupt in any step of ``quality``, ``learned`` and ``stft_gd`` leaves a best estimate;
- a new phase method is one function and one ``register`` call, usable everywhere;
- no core function is over 80 lines (the import graph is checked in test_commands.py).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import harmonic_noise

import melinvert
from melinvert import MelinvertError, pipeline, registry
from melinvert.stage import Progress, State

DATA = Path(__file__).parent / "data" / "pipelines_recorded.npz"
SRC = Path(melinvert.__file__).parent
LEN = 6400  # samples of the 0.3 s test mel (its frames x hop)


def _mel(preset: str, seconds: float) -> tuple[np.ndarray, melinvert.MelConfig]:
    cfg = melinvert.get_preset(preset)
    return melinvert.mel_spectrogram(harmonic_noise(cfg.sample_rate, seconds, seed=1), cfg), cfg


# ---------------------------------------------------------------------- identical outputs


def _recorded() -> list[tuple[str, str, str, int]]:
    with np.load(DATA) as z:
        keys = list(z.files)
    out = []
    for k in keys:
        preset, method, block, _ = k.split("__")
        out.append((k, preset, method.replace("_p_", "+"), int(block)))
    return out


@pytest.mark.parametrize(("key", "preset", "method", "block"), _recorded())
def test_named_pipelines_give_the_audio_they_gave_before(
    key: str, preset: str, method: str, block: int
) -> None:
    mel, cfg = _mel(preset, 2.2 if block == 64 else 0.4)
    got = melinvert.invert(mel, cfg, method=method, seed=0, block_frames=block)
    with np.load(DATA) as z:
        want = z[key]
    assert got.shape == want.shape
    # recorded in float32 from float64 runs: equal to the recording's rounding, except where Adam's
    # normalised steps (stft_gd; learned's refiner was trained by it, its L-BFGS follows) amplify
    # the platform's last bits: 4e-6 on another x86-64 CPU with torch 2.11, on outputs of RMS 0.2
    atol = 2e-5 if method in ("stft_gd", "learned") else 2e-7
    np.testing.assert_allclose(got, want.astype(np.float64), rtol=0, atol=atol)


# ---------------------------------------------------------------------- progress


def _events(method: str, **kw) -> tuple[list[Progress], pipeline.Plan]:
    mel, cfg = _mel("hifigan-22k-80", 0.3)
    seen: list[Progress] = []
    melinvert.invert(mel, cfg, method=method, seed=0, callback=seen.append, **kw)
    return seen, pipeline.parse_method(method, kw.get("n_iter"))


@pytest.mark.parametrize(
    "method", [*sorted(set(registry.pipelines()) - {"cnn_vocoder"}), "gd+pghi+fgla(iters=5)", "nnls+zero"]
)
def test_progress_counts_every_iteration_of_every_step(method: str) -> None:
    seen, plan = _events(method)
    for step in plan.steps:
        mine = [p for p in seen if p.stage == step.stage.name]
        assert len(mine) <= int(step.params.get("iters", 0)), step
        assert [p.iteration for p in mine] == list(range(len(mine)))
        assert all(p.total == step.params.get("iters", 0) for p in mine)
        # a fixed-count step runs all its iterations; L-BFGS may stop early when converged
        if step.stage.name != "wave_lbfgs":
            assert len(mine) == int(step.params.get("iters", 0)), step
    assert [p.done for p in seen] == list(range(1, len(seen) + 1))
    assert all(p.planned == plan.total_iterations() for p in seen)
    assert all(0.0 <= p.fraction <= 1.0 for p in seen)
    stage1 = [p for p in seen if p.stage in registry.names("magnitude")]
    assert all(p.estimate is None and p.loss.shape == (1,) for p in stage1)
    later = [p for p in seen if p.stage not in registry.names("magnitude")]
    assert all(p.estimate is not None and p.estimate.shape[-1] == LEN for p in later)


def test_n_iter_sets_stage_two_and_params_reach_any_stage() -> None:
    plan = pipeline.parse_method("quality", 7, {"wave_lbfgs": {"iters": 3, "history": 4}})
    assert plan.spelled == "sharpen+nnls(iters=36)+pghi+mfgla(iters=7)+wave_lbfgs(iters=3, history=4)"
    seen, _ = _events("quality", n_iter=7, params={"wave_lbfgs": {"iters": 3}})
    assert sum(p.stage == "mfgla" for p in seen) == 7
    assert plan.name == "quality"


def test_stage_parameters_change_the_result_and_are_checked() -> None:
    mel, cfg = _mel("hifigan-22k-80", 0.3)
    a = melinvert.invert(mel, cfg, method="default")
    b = melinvert.invert(mel, cfg, method="default", params={"magla": {"alpha": 0.5}})
    # a recording's mel: sharpen leaves it as given, so default's given_beta (0.9) holds, and the
    # alpha set here clears default's given_alpha (it holds for every item)
    c = melinvert.invert(mel, cfg, method="nnls(iters=20)+pghi+magla(iters=16, alpha=0.5, beta=0.9)")
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(b, c)
    d = melinvert.invert(mel, cfg, method="default", params={"magla": {"alpha": 0.5, "beta": 1.1}})
    e = melinvert.invert(mel, cfg, method="nnls(iters=20)+pghi+magla(iters=16, alpha=0.5)")
    np.testing.assert_array_equal(d, e)
    with pytest.raises(MelinvertError, match=r"magla has no parameter alpah \(its parameters: alpha, beta"):
        melinvert.invert(mel, cfg, method="magla(alpah=0.5)")
    with pytest.raises(MelinvertError, match=r"params names 'fgla', which is not a step of method 'default'"):
        melinvert.invert(mel, cfg, params={"fgla": {"alpha": 0.5}})
    with pytest.raises(MelinvertError, match=r"iters=-1 must be an integer >= 0"):
        melinvert.invert(mel, cfg, method="fgla(iters=-1)")
    with pytest.raises(MelinvertError, match=r"cannot read the parameters"):
        melinvert.invert(mel, cfg, method="fgla(iters=)")
    with pytest.raises(MelinvertError, match=r"must be named"):
        melinvert.invert(mel, cfg, method="fgla(3)")


def test_legacy_three_argument_callbacks_see_the_waveform_steps() -> None:
    mel, cfg = _mel("hifigan-22k-80", 0.3)
    seen = []
    melinvert.invert(mel, cfg, method="default", callback=lambda i, x, loss: seen.append((i, x.shape)))
    assert [i for i, _ in seen] == list(range(16))


# ---------------------------------------------------------------------- interrupts


class _Stop(KeyboardInterrupt):
    pass


def _stop_at(stage: str, iteration: int):
    def cb(p: Progress) -> bool:
        if p.stage == stage and p.iteration == iteration:
            raise _Stop
        return False

    return cb


INTERRUPTS = [
    ("quality", "nnls"),
    ("quality", "mfgla"),
    ("quality", "wave_lbfgs"),
    ("stft_gd", "nnls"),
    ("stft_gd", "magla"),
    ("stft_gd", "stft_gd"),
    ("learned", "mfgla"),
    ("learned", "wave_lbfgs"),
]


@pytest.mark.parametrize(("method", "stage"), INTERRUPTS)
def test_interrupt_in_any_step_leaves_the_best_estimate(method: str, stage: str) -> None:
    mel, cfg = _mel("hifigan-22k-80", 0.3)
    stream = pipeline.invert_blocks(mel, cfg, method=method, seed=0, callback=_stop_at(stage, 2))
    with pytest.raises(_Stop):
        list(stream)
    part = stream.partial()
    assert part is not None and part.shape == (1, LEN) and torch.isfinite(part).all()
    assert float(part.abs().max()) > 0.05  # a real estimate, not silence


def test_interrupt_inside_a_step_without_iterations_synthesises_what_there_is(monkeypatch) -> None:
    """Ctrl-C while the refiner (one network pass) runs: the pseudo-inverse and PGHI stand in."""
    mel, cfg = _mel("hifigan-22k-80", 0.3)
    st = registry.stage("refiner")

    def interrupted(state: State, ctx, **kw):
        raise _Stop

    monkeypatch.setitem(registry._STAGES, "refiner", registry.Stage(**{**st.__dict__, "fn": interrupted}))
    stream = pipeline.invert_blocks(mel, cfg, method="learned", seed=0)
    with pytest.raises(_Stop):
        list(stream)
    part = stream.partial()
    assert part is not None and part.shape == (1, LEN) and float(part.abs().max()) > 0.05


def test_a_block_stream_runs_once() -> None:
    mel, cfg = _mel("hifigan-22k-80", 0.3)
    stream = pipeline.invert_blocks(mel, cfg, method="fast")
    assert len(list(stream)) == 1
    with pytest.raises(MelinvertError, match="iterated already"):
        list(stream)


# ---------------------------------------------------------------------- a new method


def test_a_users_vocoder_stage_makes_the_waveform_and_only_refine_stages_follow_it(monkeypatch) -> None:
    from melinvert.magnitude import pinv

    def voc(state: State, ctx) -> State:  # a mel -> waveform network stands in: pinv + zero phase
        mag = ctx.stage_magnitude(pinv(state.mel, ctx.config))
        return state.replace(audio=ctx.frames.synthesis(torch.polar(mag, torch.zeros_like(mag))))

    monkeypatch.setattr(registry, "_STAGES", dict(registry._STAGES))
    registry.register("myvoc", "vocoder", voc, description="a test's own vocoder")
    mel, cfg = _mel("hifigan-22k-80", 0.3)
    steps = registry.parse("myvoc+wave_lbfgs(iters=2)").steps
    assert [s.stage.name for s in steps] == ["myvoc", "wave_lbfgs"]
    out = melinvert.invert(mel, cfg, method="myvoc+wave_lbfgs(iters=2)")
    assert out.shape == (LEN,) and np.isfinite(out).all()
    with pytest.raises(MelinvertError, match="a vocoder makes the waveform itself"):
        registry.parse("nnls+myvoc")


def test_a_new_phase_method_is_one_function_and_one_registration(tmp_path, monkeypatch) -> None:
    """Usable from invert, `melinvert invert --method`, `melinvert methods` and bench."""
    from melinvert.cli import main
    from melinvert.phase import project_magnitude

    def halfway(state: State, ctx, *, iters: int) -> State:
        spec = torch.polar(state.mag, state.angles)
        for i in range(iters):
            x = ctx.frames.synthesis(project_magnitude(spec, state.mag))
            spec = ctx.frames.analysis(x)
            if ctx.progress.step(i, x, torch.zeros(x.shape[0])):
                break
        return state.replace(audio=ctx.frames.synthesis(project_magnitude(spec, state.mag)))

    saved = dict(registry._STAGES)
    monkeypatch.setattr(registry, "_STAGES", saved)
    registry.register("halfway", "phase", halfway, params={"iters": 4}, description="a test's own method")

    mel, cfg = _mel("hifigan-22k-80", 0.3)
    seen: list[Progress] = []
    out = melinvert.invert(mel, cfg, method="nnls+pghi+halfway(iters=3)", callback=seen.append)
    assert out.shape == (LEN,) and [p.stage for p in seen].count("halfway") == 3
    assert "halfway (stage 2)" in melinvert.list_methods()

    np.save(tmp_path / "a.npy", mel)
    assert (
        main(
            [
                "invert",
                str(tmp_path / "a.npy"),
                "-o",
                str(tmp_path / "a.wav"),
                "--preset",
                "hifigan-22k-80",
                "--method",
                "halfway",
                "--quiet",
            ]
        )
        == 0
    )
    assert (tmp_path / "a.wav").exists()
    assert main(["methods"]) == 0

    import soundfile as sf

    sf.write(tmp_path / "clip.wav", harmonic_noise(22050, 0.5, seed=2), 22050)
    assert (
        main(
            [
                "bench",
                str(tmp_path / "clip.wav"),
                "-o",
                str(tmp_path / "bench"),
                "--preset",
                "hifigan-22k-80",
                "--methods",
                "halfway,fast",
            ]
        )
        == 0
    )
    assert "halfway" in (tmp_path / "bench" / "results.csv").read_text()


# ---------------------------------------------------------------------- structure


def test_the_registry_imports_nothing_heavy() -> None:
    tree = ast.parse((SRC / "registry.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {
        (n.module or "").split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and not n.level
    }
    assert not names & {"torch", "numpy", "scipy", "soundfile"}


_LAZY_PROBE = """
import sys
import numpy as np
import melinvert
from melinvert import registry

cfg = melinvert.get_preset("hifigan-22k-80")
mel = np.log(np.full((80, 20), 1e-2, dtype=np.float32))
melinvert.invert(mel, cfg, method="fast")
print("after fast:", "melinvert.optimize" in sys.modules, "melinvert.neural.stages" in sys.modules)

def mine(state, ctx, **kw):
    return state

# a user's stage under the name of a built-in whose module is not imported yet
registry.register("wave_lbfgs", "refine", mine, description="mine")
print("kept:", registry.stage("wave_lbfgs").fn is mine)
print("all listed:", "degli" in registry.names())
print("kept after listing:", registry.stage("wave_lbfgs").fn is mine)
"""


@pytest.mark.parametrize("name", sorted(registry.pipelines()))
def test_every_pipeline_reads_in_a_fresh_process(name: str) -> None:
    """A process's first lookup imports what the pipeline's steps need (``wave_lbfgs`` is the
    name of a pipeline and of the stage ``quality`` ends with)."""
    probe = f"from melinvert import registry; print(len(registry.parse({name!r}).steps))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and int(done.stdout) >= 1, done.stderr[-400:]


def test_lookups_import_only_the_modules_they_need_and_keep_a_users_stage() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _LAZY_PROBE], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out == [
        "after fast: False False",  # fast = nnls + pghi + fgla: no optimiser, no network
        "kept: True",
        "all listed: True",
        "kept after listing: True",  # the built-ins were imported first: none replaced it
    ]


CORE = (
    "dsp",
    "magnitude",
    "phase",
    "optimize",
    "operator",
    "registry",
    "stage",
    "pipeline",
    "codecs",
    "config",
)


def test_no_core_function_is_longer_than_80_lines() -> None:
    long = []
    for mod in CORE:
        path = SRC / f"{mod}.py"
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{mod}.{node.name}: {n} lines")
    assert not long, long


def test_registry_lists_every_kind_and_the_learned_stages_register_themselves() -> None:
    assert {"nnls", "pinv", "transpose", "gd", "refiner"} <= set(registry.names("magnitude"))
    assert {"pghi", "random", "zero"} <= set(registry.names("init"))
    assert {"gla", "fgla", "agla", "mgla", "mfgla", "magla", "degli"} <= set(registry.names("phase"))
    assert {"wave_lbfgs", "stft_gd", "joint"} <= set(registry.names("refine"))
    assert "cnn_vocoder" in registry.names("refine")  # it corrects the waveform of the stages before it
    assert registry.names("vocoder") == []  # a kind for users' own mel -> waveform stages
    assert registry.stage("mfgla").params["refit"] is True and registry.stage("fgla").params["refit"] is False
    assert registry.stage("refiner").models == ["refiner"]


@pytest.mark.parametrize(("method", "stage"), [*INTERRUPTS, ("learned", "refiner")])
def test_ctrl_c_in_any_step_of_the_cli_writes_the_best_estimate(tmp_path, monkeypatch, method, stage) -> None:
    """`melinvert invert` interrupted in each step of quality, stft_gd and learned: exit 130, the
    output written (with its .partial marker) and of the full length."""
    import soundfile as sf

    from melinvert.commands import main
    from melinvert.stage import Reporter

    mel, _ = _mel("hifigan-22k-80", 0.3)
    np.save(tmp_path / "a.npy", mel)
    if stage == "refiner":
        st = registry.stage("refiner")

        def interrupted(state: State, ctx, **kw):
            raise KeyboardInterrupt

        monkeypatch.setitem(registry._STAGES, "refiner", registry.Stage(**{**st.__dict__, "fn": interrupted}))
    else:
        step = Reporter.step

        def stop(self, iteration, audio, loss):
            if self.stage == stage and iteration == 1:
                raise KeyboardInterrupt
            return step(self, iteration, audio, loss)

        monkeypatch.setattr(Reporter, "step", stop)
    out = tmp_path / "a.wav"
    rc = main(["invert", str(tmp_path / "a.npy"), "-o", str(out), "--preset", "hifigan-22k-80",
               "--method", method, "--quiet"])  # fmt: skip
    assert rc == 130
    assert out.exists() and out.with_name("a.wav.partial").exists()
    y, sr = sf.read(out)
    assert sr == 22050 and y.shape == (LEN,) and np.abs(y).max() > 0.05
