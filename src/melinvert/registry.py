"""The stage registry: every inversion stage and named pipeline, and the method syntax.

This module imports nothing heavy (no torch): it only records what exists. The built-in stages
register themselves from the modules that define them (:mod:`melinvert.magnitude`,
:mod:`melinvert.phase`, :mod:`melinvert.optimize`, :mod:`melinvert.neural.stages`), which are
imported on the first lookup.

Kinds of stage, in the order a plan runs them:

``mel``
    reshapes the mel the later stages fit (``sharpen``: an over-smoothed, predicted mel back to
    a recording's roughness; a no-op on the mel of a recording).
``magnitude``
    stage 1: the target mel -> an STFT magnitude (``nnls``, ``pinv``, ``refiner``, ...).
``init``
    an initial phase for that magnitude (``pghi``, ``random``, ``zero``).
``phase``
    iterative phase retrieval -> a waveform (``gla``, ``fgla``, ``agla``, ``degli``).
``refine``
    waveform -> better waveform, optimised against the mel (``wave_lbfgs``, ``stft_gd``, ...) or
    corrected by a trained network (``cnn_vocoder``).
``vocoder``
    the mel -> a waveform in one step (a user's own network); may be followed by ``refine`` stages.

Every stage function has one signature (see :mod:`melinvert.stage`)::

    fn(state: State, ctx: Context, **params) -> State

A method is a pipeline name (``default``) or stages joined by ``+``, each optionally with
parameters: ``nnls(iters=20)+pghi+magla(iters=16, alpha=0.9)``. Adding a method is one function
and one :func:`register` call.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from .errors import MelinvertError, check

#: The kinds, in the order a plan runs them.
KINDS = ("mel", "magnitude", "init", "phase", "refine", "vocoder")
_KIND_LABEL = {
    "mel": "mel prior",
    "magnitude": "stage 1",
    "init": "initial phase",
    "phase": "stage 2",
    "refine": "stage 3",
    "vocoder": "vocoder",
}
#: Modules whose import registers the built-in stages and pipelines, in the order a lookup
#: imports them: a name is looked up in those imported so far before the next is imported, so
#: the built-in pipelines without optimisers or networks (``fast``, ``default``) import only
#: the first three (``optimize`` and ``neural.stages`` cost 20-30 ms of a process's first call).
BUILTIN_MODULES = (
    "melinvert.magnitude",
    "melinvert.phase",
    "melinvert.predicted",
    "melinvert.optimize",
    "melinvert.neural.stages",
)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One registered stage.

    Attributes
    ----------
    name : str
        What users write (``"magla"``).
    kind : str
        One of :data:`KINDS`.
    fn : callable
        ``fn(state, ctx, **params) -> state``.
    params : Mapping[str, Any]
        Default parameters; a plan may override any of them and nothing else. ``iters`` is the
        iteration count of an iterative stage (what ``n_iter=`` sets).
    description : str
        One line for ``melinvert methods``.
    needs : frozenset of str
        What the stage needs from the run: ``"model:KIND"`` (trained weights of that kind).
    """

    name: str
    kind: str
    fn: Callable[..., Any]
    params: Mapping[str, Any]
    description: str
    needs: frozenset[str] = frozenset()

    @property
    def iterative(self) -> bool:
        return "iters" in self.params

    @property
    def models(self) -> list[str]:
        """The learned model kinds this stage needs."""
        return sorted(n.split(":", 1)[1] for n in self.needs if n.startswith("model:"))


@dataclasses.dataclass(frozen=True)
class Step:
    """A stage with the parameters a plan runs it with."""

    stage: Stage
    params: Mapping[str, Any]

    def __str__(self) -> str:
        changed = {k: v for k, v in self.params.items() if self.stage.params.get(k) != v or k == "iters"}
        if not changed:
            return self.stage.name
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in changed.items())
        return f"{self.stage.name}({inner})"


@dataclasses.dataclass(frozen=True)
class Plan:
    """A resolved method: the steps to run, in order."""

    steps: tuple[Step, ...]
    label: str = ""

    @property
    def name(self) -> str:
        """The label users gave (a pipeline name), else the spelled-out steps."""
        return self.label or self.spelled

    @property
    def spelled(self) -> str:
        """Every step with its iteration count, e.g. ``nnls(iters=20)+pghi+magla(iters=16)``."""
        return "+".join(str(s) for s in self.steps)

    @property
    def models(self) -> list[str]:
        """The learned model kinds any step needs."""
        return sorted({m for s in self.steps for m in s.stage.models})

    def kinds(self) -> list[str]:
        return [s.stage.kind for s in self.steps]

    def total_iterations(self) -> int:
        return sum(int(s.params.get("iters", 0)) for s in self.steps)


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


_STAGES: dict[str, Stage] = {}
_ALIASES: dict[str, tuple[str, dict[str, Any], str]] = {}
_PIPELINES: dict[str, tuple[str, str]] = {}
_loaded = 0  #: how many of BUILTIN_MODULES are imported


def register(
    name: str,
    kind: str,
    fn: Callable[..., Any],
    *,
    params: Mapping[str, Any] | None = None,
    description: str,
    needs: frozenset[str] | set[str] | tuple[str, ...] = (),
) -> Stage:
    """Register a stage under ``name`` (replacing one of that name). Returns its record.

    Example: a new phase method is a function ``fn(state, ctx, *, iters) -> state`` and
    ``register("mine", "phase", fn, params={"iters": 32}, description="...")``; it is then
    usable as ``invert(mel, cfg, method="nnls+pghi+mine")``, from ``melinvert invert --method``,
    ``melinvert methods`` and ``melinvert bench``.
    """
    check(
        isinstance(name, str) and re.fullmatch(r"[a-z][a-z0-9_]*", name) is not None,
        f"stage name {name!r} must be lower-case letters, digits and _",
    )
    check(kind in KINDS, f"stage kind {kind!r} must be one of {', '.join(KINDS)}")
    check(callable(fn), f"stage {name!r}: fn must be callable")
    if not _builtin(fn):
        _ensure_loaded()  # the built-ins first, so a user's stage of a built-in's name replaces it
    st = Stage(name, kind, fn, MappingProxyType(dict(params or {})), description, frozenset(needs))
    _STAGES[name] = st
    _ALIASES.pop(name, None)
    return st


def _builtin(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is defined in one of :data:`BUILTIN_MODULES`."""
    return getattr(fn, "__module__", None) in BUILTIN_MODULES


def register_alias(name: str, stage: str, params: Mapping[str, Any], description: str) -> None:
    """Register ``name`` as ``stage`` with other default ``params`` (``mfgla`` = ``fgla(refit=True)``)."""
    check(stage in _STAGES, f"alias {name!r}: no stage {stage!r}")
    unknown = set(params) - set(_STAGES[stage].params)
    check(not unknown, f"alias {name!r}: {stage} has no parameter {', '.join(sorted(unknown))}")
    _ALIASES[name] = (stage, dict(params), description)


def register_pipeline(name: str, method: str, description: str) -> None:
    """Register a named pipeline as a method string (checked when first used)."""
    check(isinstance(method, str) and method.strip(), f"pipeline {name!r} needs a method string")
    _PIPELINES[name] = (method, description)


def _ensure_loaded(name: str | None = None, *, as_stage: bool = False) -> None:
    """Import the built-in modules: all of them, or (with ``name``) those up to the first that
    registers ``name`` (none if it is registered already; all if no built-in does); with
    ``as_stage``, as a stage or alias (``wave_lbfgs`` is also the name of a pipeline)."""
    global _loaded

    def known() -> bool:
        return name in _STAGES or name in _ALIASES or (not as_stage and name in _PIPELINES)

    while _loaded < len(BUILTIN_MODULES) and (name is None or not known()):
        _loaded += 1
        importlib.import_module(BUILTIN_MODULES[_loaded - 1])


def stage(name: str) -> Stage:
    """The stage record of ``name`` (an alias resolves to its stage with the alias's defaults)."""
    _ensure_loaded(name, as_stage=True)
    if name in _STAGES:
        return _STAGES[name]
    if name in _ALIASES:
        base, params, desc = _ALIASES[name]
        st = _STAGES[base]
        return dataclasses.replace(
            st, name=name, params=MappingProxyType({**st.params, **params}), description=desc
        )
    raise KeyError(name)


def names(kind: str | None = None) -> list[str]:
    """Stage names (aliases included), optionally of one kind, in registration order."""
    _ensure_loaded()
    out = [n for n, s in _STAGES.items() if kind is None or s.kind == kind]
    out += [n for n, (b, _, _) in _ALIASES.items() if kind is None or _STAGES[b].kind == kind]
    return out


def pipelines() -> dict[str, tuple[str, str]]:
    """Named pipelines: name -> (method string, one line)."""
    _ensure_loaded()
    return dict(_PIPELINES)


def describe_all() -> dict[str, str]:
    """Every name :func:`parse` accepts, labelled with its kind, with one line each."""
    _ensure_loaded()
    out = {name: desc for name, (_, desc) in _PIPELINES.items()}
    for n in names():
        st = stage(n)
        out[f"{n} ({_KIND_LABEL[st.kind]})"] = st.description
    return out


# ---------------------------------------------------------------------- method syntax

_TOKEN = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.S)


def _split_top(text: str) -> list[str]:
    """Split on ``+`` outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "+" and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _parse_args(text: str, where: str) -> dict[str, Any]:
    """``iters=20, alpha=0.9`` -> a dict of Python literals (true/false/none accepted)."""
    if not text.strip():
        return {}
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError:
        raise MelinvertError(
            f"cannot read the parameters {text!r} of {where}: write name=value, ..."
        ) from None
    assert isinstance(call, ast.Call)
    check(not call.args, f"parameters of {where} must be named (name=value): {text!r}")
    out = {}
    for kw in call.keywords:
        check(kw.arg is not None, f"parameters of {where} must be named (name=value): {text!r}")
        out[kw.arg] = _literal(kw.value, f"{where}'s {kw.arg}")
    return out


def _literal(node: ast.AST, where: str) -> Any:
    if isinstance(node, ast.Name) and node.id.lower() in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[node.id.lower()]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise MelinvertError(f"{where} must be a number, string, True/False or a tuple") from None


def _check_params(st: Stage, given: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(given) - set(st.params))
    if unknown:
        known = ", ".join(sorted(st.params)) or "none"
        raise MelinvertError(
            f"{where}: {st.name} has no parameter {', '.join(unknown)} (its parameters: {known})"
        )
    out = {**st.params, **given}
    if "iters" in out:
        it = out["iters"]
        check(
            isinstance(it, int) and not isinstance(it, bool) and it >= 0,
            f"{where}: {st.name}'s iters={it!r} must be an integer >= 0",
        )
    return out


def _unknown(tok: str, method: str) -> MelinvertError:
    known = sorted(set(_PIPELINES) | set(names()))
    near = difflib.get_close_matches(tok, known, n=3)
    hint = f"; did you mean {' or '.join(near)}?" if near else f"; known: {', '.join(known)}"
    return MelinvertError(f"unknown method {tok!r} in method {method!r}{hint}")


def _order(steps: list[Step], method: str) -> list[Step]:
    """Put the steps in kind order and fill in the defaults (``nnls``, ``pghi``)."""
    by_kind: dict[str, list[Step]] = {k: [] for k in KINDS}
    for s in steps:
        if s.stage.kind != "refine" and by_kind[s.stage.kind]:
            raise MelinvertError(
                f"method {method!r} names two stages of the same kind ({s.stage.name!r} comes after another "
                "of its kind): give at most one stage-1, initial-phase and stage-2 name"
            )
        by_kind[s.stage.kind].append(s)
    if by_kind["vocoder"]:
        check(
            not (by_kind["magnitude"] or by_kind["init"] or by_kind["phase"]),
            f"method {method!r}: a vocoder makes the waveform itself; only refine stages may follow it",
        )
        return by_kind["mel"] + by_kind["vocoder"] + by_kind["refine"]
    if not by_kind["magnitude"]:
        nn = stage("nnls")
        by_kind["magnitude"] = [Step(nn, nn.params)]
    if not by_kind["init"]:
        pg = stage("pghi")
        by_kind["init"] = [Step(pg, pg.params)]
    return [s for k in KINDS for s in by_kind[k]]


def parse(
    method: str,
    *,
    n_iter: int | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> Plan:
    """Resolve a method into a :class:`Plan`.

    Parameters
    ----------
    method : str
        A pipeline name or ``+``-joined stages with optional parameters, in any order;
        missing stages default to ``nnls`` (stage 1) and ``pghi`` (initial phase); without a
        stage-2 name the initial phase is synthesised directly.
    n_iter : int, optional
        Iterations of the stage-2 (phase) step, or of the last iterative step when the plan
        has no stage 2.
    params : mapping, optional
        ``{stage name: {parameter: value}}``, applied over the method's own, e.g.
        ``{"magla": {"alpha": 0.9}}``; every name must be a step of the plan.
    """
    check(isinstance(method, str) and method.strip() != "", f"method={method!r} must be a non-empty name")
    label = ""
    text = method.strip()
    if "+" not in text and "(" not in text:
        _ensure_loaded(text)  # a pipeline name (``learned``) or one stage
    if text in _PIPELINES:
        label, text = text, _PIPELINES[text][0]
    steps = []
    for tok in _split_top(text):
        m = _TOKEN.match(tok)
        if not m:
            raise MelinvertError(
                f"cannot read {tok.strip()!r} in method {method!r}: write name or name(k=v, ...)"
            )
        name, args = m.group(1), m.group(2)
        try:
            st = stage(name)
        except KeyError:
            raise _unknown(name, method) from None
        steps.append(Step(st, _check_params(st, _parse_args(args or "", name), f"method {method!r}")))
    steps = _order(steps, method)
    if params:
        steps = _apply_params(steps, params, method)
    if n_iter is not None:
        check(
            isinstance(n_iter, int) and not isinstance(n_iter, bool) and n_iter >= 0,
            f"n_iter={n_iter!r} must be an integer >= 0",
        )
        steps = _apply_n_iter(steps, n_iter)
    return Plan(tuple(steps), label)


def _apply_params(steps: list[Step], params: Mapping[str, Mapping[str, Any]], method: str) -> list[Step]:
    check(isinstance(params, Mapping), "params must map stage names to {parameter: value}")
    by_name = {s.stage.name: i for i, s in enumerate(steps)}
    for name, given in params.items():
        check(
            name in by_name,
            f"params names {name!r}, which is not a step of method {method!r} "
            f"(its steps: {', '.join(by_name)})",
        )
        check(isinstance(given, Mapping), f"params[{name!r}] must be a mapping of parameter -> value")
        i = by_name[name]
        # a parameter set here holds for every item: it clears the plan's own per-item
        # variant of it (``given_alpha`` beside ``alpha``; see phase.per_item_params)
        cleared = {
            f"given_{k}": None for k in given if f"given_{k}" in steps[i].params and f"given_{k}" not in given
        }
        merged = _check_params(steps[i].stage, {**steps[i].params, **cleared, **given}, f"params[{name!r}]")
        steps[i] = Step(steps[i].stage, MappingProxyType(merged))
    return steps


def _apply_n_iter(steps: list[Step], n_iter: int) -> list[Step]:
    idx = [i for i, s in enumerate(steps) if s.stage.kind == "phase" and s.stage.iterative]
    if not idx:
        idx = [i for i, s in enumerate(steps) if s.stage.iterative][-1:]
    for i in idx:
        steps[i] = Step(steps[i].stage, MappingProxyType({**steps[i].params, "iters": n_iter}))
    return steps


# ---------------------------------------------------------------------- built-in pipelines
# Chosen from measurements (benchmarks/RESULTS.md, benchmarks/optimizers.md); the learned ones
# are registered by melinvert.neural.stages.
#: ``default``'s steps, which ``stft_gd``, ``wave_lbfgs`` and ``joint`` continue
DEFAULT_METHOD = "sharpen+nnls(iters=20)+pghi+magla(iters=16, given_alpha=0.9, given_beta=0.9)"
register_pipeline(
    "default",
    DEFAULT_METHOD,
    "a predicted (over-smoothed) mel sharpened, NNLS magnitude, PGHI phase, 16 accelerated Griffin-Lim iterations re-fitted to the mel (momentum 0.9 where the mel was left as given)",
)
register_pipeline(
    "fast",
    "sharpen+pinv+pghi+magla(iters=6)",
    "as default with the pseudo-inverse for stage 1 and 6 iterations: about twice as fast",
)
register_pipeline(
    "stft_gd",
    f"{DEFAULT_METHOD}+stft_gd(iters=100)",
    "default, then 100 Adam steps on a free STFT (consistency + log-mel fit)",
)
register_pipeline(
    "wave_lbfgs",
    f"{DEFAULT_METHOD}+wave_lbfgs(iters=40)",
    "default, then 40 L-BFGS iterations on the waveform against the log mel",
)
register_pipeline(
    "joint",
    f"{DEFAULT_METHOD}+joint(iters=60)",
    "default, then 60 ADMM iterations on magnitude and phase together (power-1 mels)",
)
register_pipeline(
    "quality",
    "sharpen+nnls+pghi+mfgla(iters=200)+wave_lbfgs(iters=20)",
    "the best without training at librosa's speed or better: sharpen, NNLS, PGHI, 200 mel-refitted "
    "fast Griffin-Lim iterations, then 20 waveform L-BFGS iterations",
)
