# ruff: noqa: B023  (the helpers defined in loops are used within the same iteration)
"""Research for issue 12 (2026-12-05, session 8): what in an over-smoothed mel costs DNSMOS.

Oracle swaps (``omel:kind=...``: parts of the true mel put into the sharpened one), harmonic
combs from a pYIN f0 track (``ocomb``, ``ocomb2``, ``oripple``: oracle f0) and a regularised
Gaussian deconvolution along mel bins in place of the 3-tap unsharp mask (``sh2:...``, see
:func:`sharpen2`). Session 9: ``--fit-prior PRESET`` fits ``RIPPLE_PRIOR``; ``base`` is today's ``default`` (with the ripple-depth step of
:func:`melinvert.predicted.ripple_depth`), ``noripple`` the sharpening without it; the other
methods start from today's sharpening too, so session 8's figures (made before the step) differ. Findings and tables: ``benchmarks/predicted_research.md``, section
"2026-12-05 (session 8)". Not part of the package; methods are ``;``-separated, keywords after
``:``, e.g.::

    python benchmarks/harmonic_research.py --clips tune --degr smooth,tts \
        --methods "base;omel:kind='lowtrue';sh2:gmax=3.0,smax=1.5,kinds=('unsharp','gate')"
"""

import json
import sys
import time

import librosa
import numpy as np
import soxr
import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import argparse
import math

import predicted_research as pr

import melinvert as mi
from melinvert import metrics, predicted, registry
from melinvert.dsp import FrameOps
from melinvert.magnitude import decode_mel, nnls
from melinvert.operator import mel_operator
from melinvert.phase import MelRefit, agla, init_pghi, per_item_params
from melinvert.predicted import SHARPEN_MAX_AMOUNT, SHARPEN_TARGETS, _log_and_active, _roughness, _unsharp


def gdeconv(log, sigma, dim, gmax=4.0, pad=8):
    """Regularised inverse of a Gaussian blur (std sigma cells, per item (B,)) along dim."""
    x = log.movedim(dim, -1)
    n = x.shape[-1]
    p = min(pad, n - 1)
    xp = torch.cat([x[..., 1 : p + 1].flip(-1), x, x[..., -p - 1 : -1].flip(-1)], dim=-1)
    N = xp.shape[-1]
    w = 2 * math.pi * torch.fft.rfftfreq(N, dtype=log.dtype)  # rad / cell
    s = sigma.to(log.dtype).view(-1, *([1] * (x.dim() - 1)))
    att = torch.exp(-0.5 * (s * w) ** 2)
    H = (1 + 1 / gmax) / (att + 1 / gmax)
    y = torch.fft.irfft(torch.fft.rfft(xp, dim=-1) * H, n=N, dim=-1)[..., p : p + n]
    return y.movedim(-1, dim)


def tsm(x, k):
    for _ in range(k):
        pad = torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)
        x = 0.5 * x + 0.25 * pad[..., :-2] + 0.25 * pad[..., 2:]
    return x


def sharpen2(
    mel,
    *,
    targets=SHARPEN_TARGETS,
    kinds=("unsharp", "gauss"),
    gmax=4.0,
    smax=3.0,
    steps=12,
    max_amount=SHARPEN_MAX_AMOUNT,
    ts=0,
    gate=0.6,
    lowbins=27,
):
    log, active, floor = _log_and_active(mel)
    rt0 = _roughness(log, active, -1)
    changed = torch.zeros(mel.shape[0], dtype=torch.bool)
    for dim, target, kind in ((-1, targets[0], kinds[0]), (-2, targets[1], kinds[1])):
        before = _roughness(log, active, dim)
        if not bool((before < target).any()):
            continue
        if kind == "low":
            nb = log.shape[-2]
            lowmask = (torch.arange(nb) < lowbins).view(-1, 1)

            def f(L, a):
                return torch.where(lowmask, gdeconv(L, a, dim, gmax), _unsharp(L, a * max_amount / smax, dim))
        elif kind == "gate":
            g = (rt0 < gate).view(-1, 1, 1)

            def f(L, a):
                return torch.where(
                    g,
                    gdeconv(L, a, dim, gmax),
                    _unsharp(L, a * 0 + torch.where(g.view(-1), a, a * max_amount / smax), dim),
                )
        else:
            f = (
                (lambda L, a: _unsharp(L, a, dim))
                if kind == "unsharp"
                else (lambda L, a: L + tsm(gdeconv(L, a, dim, gmax) - L, ts))
            )
        lo = torch.zeros_like(before)
        hi = torch.full_like(before, float(max_amount if kind == "unsharp" else smax))
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            short = _roughness(f(log, mid), active, dim) < target
            lo = torch.where(short, mid, lo)
            hi = torch.where(short, hi, mid)
        log = f(log, torch.where(before < target, lo, torch.zeros_like(lo)))
        changed |= before < target
    keep = changed.view(-1, 1, 1) & (mel > floor)
    sharp = torch.where(keep, torch.exp(log), torch.zeros_like(mel))
    given = torch.where(keep, mel, torch.zeros_like(mel)).sum(dim=(-2, -1), keepdim=True)
    gain = given / sharp.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
    return torch.where(keep, sharp * gain, mel), lo


cfg = mi.get_preset(pr.PRESET)
sr = cfg.sample_rate
NFFT = cfg.n_fft

SH = {}


def prep(logmel):
    lin = decode_mel(torch.as_tensor(logmel, dtype=torch.float32)[None], cfg)
    if SH:
        sh, SH["amount"] = sharpen2(lin, **SH)
    else:
        sh = predicted.sharpen_mel(lin, cfg)
    magla = next(s for s in registry.parse("default").steps if s.stage.name == "magla")
    names = ("alpha", "beta", "given_alpha", "given_beta")
    mom = per_item_params({k: magla.params[k] for k in names}, sh, lin)
    mel = mel_operator(cfg, dtype=sh.dtype, device=sh.device).extend_frames(sh)
    mag = nnls(mel, cfg, n_iter=20).transpose(-1, -2).contiguous()
    return mel, mag, mom


def finish(mel, mag, mom, n, iters=16):
    ops = FrameOps(cfg, n, dtype=mag.dtype, device=mag.device)
    refit = MelRefit(mel.transpose(-1, -2).contiguous(), cfg)
    return agla(mag, ops, init_pghi(mag, cfg), n_iter=iters, refit=refit, **mom)[0].numpy()


def band_rescale(mel, M):
    refit = MelRefit(mel.transpose(-1, -2).contiguous(), cfg)
    out = M
    for _ in range(3):
        out = refit(out.to(torch.complex64))
    return out


def comb(f0, voiced, nbins, width=0.85, jitter=0.01, fmax=5500.0, depth=1.0):
    """(T,) f0 Hz, voiced (T,) in [0,1] -> (T, F) comb gain, mean ~1 per harmonic period."""
    f = np.arange(nbins) * sr / NFFT
    T = len(f0)
    G = np.ones((T, nbins), np.float32)
    for t in range(T):
        if voiced[t] <= 0 or not np.isfinite(f0[t]):
            continue
        h = np.arange(1, int(fmax // f0[t]) + 1)
        w = np.sqrt((width * sr / NFFT) ** 2 + (h * jitter * f0[t]) ** 2)
        d = f[:, None] - h[None, :] * f0[t]
        c = np.exp(-0.5 * (d / w) ** 2).sum(1)
        c = c / (np.sqrt(2 * np.pi) * w.mean() / f0[t])  # mean ~1
        v = voiced[t] * depth
        g = (1 - v) + v * c
        g[f > fmax] = 1.0
        G[t] = g
    return torch.as_tensor(G)


def oracle_f0(y):
    f0, vflag, _vprob = librosa.pyin(
        y, fmin=60, fmax=400, sr=sr, frame_length=NFFT, hop_length=cfg.hop_length, center=True
    )
    return f0, vflag.astype(float)


def oracle_comb(y, mag, kw):
    """The comb gain (T, F) of the recording's own pYIN f0 track, resized to mag's T frames."""
    f0, v = oracle_f0(y)
    T = mag.shape[1]
    f0 = np.resize(f0, T) if len(f0) != T else f0
    v = np.resize(v, T) if len(v) != T else v
    return comb(f0, v, mag.shape[2], **kw.get("comb", {}))


def true_spec(y, n):
    ops = FrameOps(cfg, n, dtype=torch.float32, device="cpu")
    return ops.analysis(torch.as_tensor(y, dtype=torch.float32)[None])


def run_method(name, y, logmel, kw):
    n = len(y)
    mel, mag, mom = prep(logmel)
    if name == "sh2":
        SH.clear()
        SH.update(kw)
        try:
            mel, mag, mom = prep(logmel)
        finally:
            SH.clear()
        return finish(mel, mag, mom, n)
    if name == "base":
        return finish(mel, mag, mom, n)
    if name == "noripple":  # the sharpening as it was before the ripple-depth step (session 9)
        lin = decode_mel(torch.as_tensor(logmel, dtype=torch.float32)[None], cfg)
        mel = mel_operator(cfg).extend_frames(predicted.sharpen_mel(lin, cfg, ripple=False))
        mag = nnls(mel, cfg, n_iter=20).transpose(-1, -2).contiguous()
        return finish(mel, mag, mom, n)
    if name == "ofine":
        X = true_spec(y, n)
        M = band_rescale(mel, X.abs())
        return finish(mel, M, mom, n)
    if name == "ocomb":
        G = oracle_comb(y, mag, kw)
        M = band_rescale(mel, mag * G[None])
        return finish(mel, M, mom, n)
    if name == "ocomb2":
        G = oracle_comb(y, mag, kw)
        M = mag * G[None]
        op = mel_operator(cfg)
        cm = op.forward(M.transpose(-1, -2))  # (1, n_mels, T)
        lo = kw.get("bins", 27)
        new = mel.clone()
        mode = kw.get("mode", "replace")
        if mode == "replace":
            new[:, :lo] = cm[:, :lo]
        elif mode == "max":
            new[:, :lo] = torch.maximum(mel[:, :lo], cm[:, :lo])
        elif mode == "geo":
            a = kw.get("a", 0.5)
            new[:, :lo] = mel[:, :lo] ** (1 - a) * cm[:, :lo].clamp_min(1e-12) ** a
        if kw.get("renorm", False):
            new[:, :lo] *= mel[:, :lo].sum(1, keepdim=True) / new[:, :lo].sum(1, keepdim=True).clamp_min(
                1e-12
            )
        M2 = (
            band_rescale(new, M)
            if kw.get("init", "comb") == "comb"
            else nnls(new, cfg, n_iter=20).transpose(-1, -2).contiguous()
        )
        return finish(new, M2, mom, n)
    if name == "oripple":
        G = oracle_comb(y, mag, kw)
        op = mel_operator(cfg)
        E = mag.transpose(-1, -2)
        if kw.get("flat", False):
            E = torch.ones_like(E)
        rip = torch.log(op.forward(E * G.T[None]).clamp_min(1e-12)) - torch.log(
            op.forward(E).clamp_min(1e-12)
        )
        r = kw.get("r", 1.0)
        hi = kw.get("bins", 80)
        new = mel.clone()
        new[:, :hi] = mel[:, :hi] * torch.exp(r * rip[:, :hi])
        M2 = nnls(new, cfg, n_iter=20).transpose(-1, -2).contiguous()
        return finish(new, M2, mom, n)
    if name == "omel":
        tl = decode_mel(torch.as_tensor(mi.mel_spectrogram(y, pr.PRESET), dtype=torch.float32)[None], cfg)
        lin = decode_mel(torch.as_tensor(logmel, dtype=torch.float32)[None], cfg)
        sh = predicted.sharpen_mel(lin, cfg)
        k = kw["kind"]
        lo = int(kw.get("bins", 27))
        if k == "energy":
            new = sh * (tl.sum(1, keepdim=True) / sh.sum(1, keepdim=True).clamp_min(1e-12))
        elif k == "lowtrue":
            new = sh.clone()
            new[:, :lo] = tl[:, :lo]
        elif k == "hightrue":
            new = sh.clone()
            new[:, lo:] = tl[:, lo:]
        elif k == "min":
            new = torch.minimum(sh, tl)
        elif k == "max":
            new = torch.maximum(sh, tl)
        elif k == "sharp":
            new = sh
        elif k == "ripscale":
            from scipy.ndimage import gaussian_filter1d as g1

            lt = np.log(np.maximum(tl[0].numpy(), 1e-5))
            ls = np.log(sh[0].numpy().clip(1e-5))
            hi = kw.get("hi", 27)
            act = (lt > lt.max() - 6)[:hi].mean(0) > 0.9
            rs = ls[:hi] - g1(ls[:hi], 2.0, axis=0, mode="nearest")
            rt = lt[:hi] - g1(lt[:hi], 2.0, axis=0, mode="nearest")
            gain = (rt[:, act] * rs[:, act]).sum() / (rs[:, act] ** 2).sum()
            v = ls.copy()
            v[:hi] = ls[:hi] + (gain - 1) * rs
            new = sh.clone()
            new[0] = torch.as_tensor(np.exp(v), dtype=sh.dtype)
        elif k in ("lowT", "lowF", "lowhalf"):
            from scipy.ndimage import gaussian_filter1d as g1

            lt = np.log(np.maximum(tl[0].numpy(), 1e-5))
            if k == "lowT":
                v = g1(lt, 1.0, axis=1, mode="nearest")
            elif k == "lowF":
                v = g1(lt, 0.7, axis=0, mode="nearest")
            else:
                v = 0.5 * lt + 0.5 * np.log(sh[0].numpy().clip(1e-5))
            new = sh.clone()
            new[0, :lo] = torch.as_tensor(np.exp(v[:lo]), dtype=sh.dtype)
        mel = mel_operator(cfg, dtype=new.dtype, device=new.device).extend_frames(new)
        mag = nnls(mel, cfg, n_iter=20).transpose(-1, -2).contiguous()
        return finish(mel, mag, {"alpha": 0.99, "beta": 1.1}, n)
    raise ValueError(name)


def fit_ripple_prior(preset: str, exclude_heldout: bool = False) -> None:
    """Session 9: fit ``RIPPLE_PRIOR`` (true ripple depth = c * sharpened depth ** b).

    Every 8th file of ``shared/data/train`` (from the 5th, sorted; 40 clips), each blurred by
    0.8/0.5, 1/0.7 and 1.3/0.9 and sharpened without the ripple step; the depth is measured as
    :func:`melinvert.predicted.ripple_depth` does, with scipy's Gaussian (an independent path).
    """
    from scipy.ndimage import gaussian_filter1d

    pcfg = mi.get_preset(preset)
    band = predicted.ripple_band(pcfg)
    if band is None:
        print(f"{preset}: outside the ripple step's envelope")
        return
    n_low, sigma = band
    files = sorted(p for p in pr.TRAIN.iterdir() if p.suffix in (".flac", ".wav"))[4::8]
    names = [p.stem for p in files if not (exclude_heldout and p.stem in pr.HELDOUT)]

    def depth(log):
        low = log[:n_low]
        r = low - gaussian_filter1d(low, sigma, axis=0, mode="nearest")
        e = np.log(np.exp(low / pcfg.power).sum(0))
        loud = e > e.max() - predicted.RIPPLE_ACTIVE_RANGE
        return float(np.sqrt(np.mean((r[1:-1, loud] / pcfg.power) ** 2)))

    rows = []
    for st, sf in [(0.8, 0.5), (1.0, 0.7), (1.3, 0.9)]:
        ns = argparse.Namespace(sigma_t=st, sigma_f=sf, noise=0.2)
        for ci, c in enumerate(names):
            y = pr.load_clip(c, pcfg.sample_rate)
            lm = mi.mel_spectrogram(y, pcfg)
            dm = pr.degrade("smooth", lm, None, y, ns, seed=ci).astype(np.float32)
            true = decode_mel(torch.as_tensor(lm, dtype=torch.float64)[None], pcfg)[0].numpy()
            lin = decode_mel(torch.as_tensor(dm, dtype=torch.float64)[None], pcfg)
            sh = predicted.sharpen_mel(lin, pcfg, ripple=False)[0].numpy()
            fl = max(true.max() * 1e-7, 1e-30)
            rows.append((st, depth(np.log(np.maximum(true, fl))), depth(np.log(np.maximum(sh, fl)))))
    R = np.array(rows)
    b, a = np.polyfit(np.log(R[:, 2]), np.log(R[:, 1]), 1)
    print(f"{preset}: {len(names)} clips, fit c={np.exp(a):.3f} b={b:.3f}")
    for st in (0.8, 1.0, 1.3):
        t, s = R[R[:, 0] == st, 1], R[R[:, 0] == st, 2]
        c, b0 = predicted.RIPPLE_PRIOR
        print(
            f"  blur {st}: rms log error of the depth {np.sqrt(np.mean(np.log(t / s) ** 2)):.3f}, "
            f"after RIPPLE_PRIOR {np.sqrt(np.mean(np.log(t / (c * s**b0)) ** 2)):.3f}"
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fit-prior", metavar="PRESET", help="fit the ripple-depth prior, then exit")
    ap.add_argument("--exclude-heldout", action="store_true")
    ap.add_argument("--clips", default="tune")
    ap.add_argument("--methods", default="base,ofine,ocomb")
    ap.add_argument("--degr", default="smooth")
    ap.add_argument("--cache", default="scratch/harm_cache.json")
    ap.add_argument("--st", type=float, default=1.0)
    ap.add_argument("--sf", type=float, default=0.7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.fit_prior:
        fit_ripple_prior(args.fit_prior, args.exclude_heldout)
        return
    clips = {"tune": pr.TUNE, "check": pr.CHECK, "all": pr.TUNE + pr.CHECK, "heldout": pr.HELDOUT}.get(
        args.clips, args.clips.split(",")
    )
    ns = argparse.Namespace(sigma_t=args.st, sigma_f=args.sf, noise=0.2)
    cache = json.load(open(args.cache)) if __import__("os").path.exists(args.cache) else {}
    for m in args.methods.split(";"):
        name, _, kws = m.partition(":")
        kw = eval("dict(" + kws + ")") if kws else {}
        for d in args.degr.split(","):
            rows = []
            for ci, c in enumerate(clips):
                key = f"{m}|{d}|{c}" + ("" if (args.st, args.sf) == (1.0, 0.7) else f"|{args.st}/{args.sf}")
                if key not in cache:
                    y = pr.load_clip(c, sr)
                    lm = mi.mel_spectrogram(y, pr.PRESET)
                    dm = np.maximum(pr.degrade(d, lm, None, y, ns, seed=ci), np.log(1e-5)).astype(np.float32)
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        out = run_method(name, y, dm, kw)
                    dt = time.perf_counter() - t0
                    s = metrics.score(y, out, sr, config=cfg)
                    o16 = soxr.resample(out.astype(np.float64), sr, 16000, quality="VHQ")
                    cache[key] = dict(
                        pesq=s["pesq_wb"],
                        stoi=s["stoi"],
                        dist=pr.distillmos(o16),
                        dns=pr.dnsmos_ovrl(o16),
                        t=dt,
                        rms=float(np.sqrt(np.mean(out**2) / np.mean(y**2))),
                    )
                    json.dump(cache, open(args.cache, "w"))
                rows.append(cache[key])

            def mean(k):
                return np.mean([r[k] for r in rows])

            print(
                f"{m:50s} {d:7s} PESQ {mean('pesq'):.3f} STOI {mean('stoi'):.3f} Distill {mean('dist'):.3f} DNS {mean('dns'):.3f} rms {mean('rms'):.2f} t {mean('t'):.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
