"""Map quality per kind of map, at equal beamtime with travel: agent vs serpentine raster vs the
best full coarse raster that fits the same time (issue 11).

Beamtime model, noise model and engine configs are those of bench_map_quality.py (imported):
a 20 mm square, 5 mm/s per motor in parallel, 0.5 s per point, counting noise. T is the
beamtime of the full 20 x 20 serpentine raster (284 s). Each method is measured at T/3, T/2
and T:

- ``agent``: the engine with the settings under test (``--agent-config``, ``--set``), asking
  one point at a time from where the motors are. Anytime (default): one run until T, scored
  at each checkpoint. ``--budgeted``: one run per checkpoint, told its beamtime as
  ``stop.max_time_s``, as a scientist who books beamtime does (the coarse raster knows its
  stop time too; an anytime agent cannot, and must be non-uniform at some checkpoint);
- ``raster``: the 20 x 20 serpentine raster, stopped at the checkpoint (at T it is complete);
- ``coarse``: the best full k x k serpentine raster whose beamtime fits the checkpoint: the
  largest k that fits (k = 10 at T/3, 13 at T/2, 20 at T).

Reconstruction: the agent's map is the posterior mean of the engine's GP with the agent's own
config, hyperparameters retrained on all of its data. A raster's map is the best of (bilinear
interpolation [complete rasters only], the GP with the agent's config, the GP with the
engine's defaults [the T raster only]) by the kind's primary measure, which makes the raster
the strictest reference. Maps are scored on a 141 x 141 grid (0.143 mm pixels).

Measures per kind:

- ``boundary`` (phase boundaries, domains): boundary localisation error (mm), the symmetric
  mean distance between the reconstructed and the true level contour(s) (pixels where the map
  crosses the level between 4-neighbours; mean over true-contour pixels of the distance to the
  reconstructed contour and vice versa, averaged; levels weighted by true contour length); and
  RMSE. Contour levels: mid-way between adjacent phase levels.
- ``sparse`` (particles, narrow peaks): fraction of features found, a local maximum of the map
  at least background + half the feature's height within R_FOUND = 1.0 mm of its centre; and
  false detections, local maxima at least background + half the smallest feature height that
  lie farther than R_FOUND from every centre (a plateau counts once).
- ``smooth`` and ``texture`` (area-filling): RMSE.

Families (12 in 4 kinds) and the split, fixed before anything was measured. Settings may be
chosen only on the ``tuning`` families; ``held-out`` families are reported separately and
never used to choose a setting:

==========  ========================================  ========================================
kind        tuning                                    held-out
==========  ========================================  ========================================
boundary    sim_phase_boundary, sim_domains           islands (thresholded random field)
sparse      sim_particles, peaks10 (w 0.4-1.0 mm)     specks (25 peaks, sigma 0.12-0.35 mm, on
                                                      a varying background)
smooth      bumps (5 broad Gaussians), ripple         franke (Franke's function, random
            (radial sine, wavelength 5-8 mm)          orientation)
texture     grf (Gaussian random field, corr. 1.2     gabor (three gratings, period 2-4 mm,
            mm), grains (80 Voronoi cells)            smoothly modulated)
==========  ========================================  ========================================

Seeds 0 to 5 by default (geometry and noise both follow the seed): a median over 3 seeds
moved by up to 0.27 between seeds 0-2 and 3-5 (results/map_kinds_budgeted_tuning_s345.json).

Also (``--gpcam-example``, on by default): the seed's gpCAM example, the instrument
sin(|x|) on [[3, 45.8], [4, 47]], 10 initial points, no travel, noise-free: RMSE of the
agent's map at 300 points vs 300 uniformly random points (same GP scoring, 201 x 201 grid).

    .venv/bin/python benchmarks/bench_map_kinds.py [--quick] [--budgeted] [--seeds 0 1 2 3 4 5]
        [--split tuning|heldout|all] [--kinds boundary sparse ...] [--jobs 2]
        [--agent-config configs/agent.yaml] [--set key=json ...] [--no-figures]

``--quick``: seed 0 only, no gpCAM example, no figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import bench_map_quality as mq  # noqa: E402
import numpy as np  # noqa: E402
from agent_settings import SHIPPED, coordinate_resolution, model_settings  # noqa: E402
from scipy.interpolate import RegularGridInterpolator  # noqa: E402

from agent.config import make_engine_config  # noqa: E402
from agent.engine import Engine  # noqa: E402
from agent.messages import Measurement  # noqa: E402
from plans.scoring import boundary_error_mm, features_found  # noqa: E402

HALF = mq.HALF
RESULTS = Path(__file__).parent / "results"
FRACTIONS = (1 / 3, 1 / 2, 1.0)
FRAC_NAMES = ("T/3", "T/2", "T")
GRID_N = 20  # the full raster is GRID_N x GRID_N
NG = 141  # scoring grid
R_FOUND = 1.0  # mm
KINDS = ("boundary", "sparse", "smooth", "texture")
PRIMARY = {"boundary": "boundary_error_mm", "sparse": "found_fraction", "smooth": "rmse",
           "texture": "rmse"}


# ---------------------------------------------------------------- map families
class Map:
    """A truth map f(x, y) (mm) with what its kind's measures need."""

    def __init__(self, f, kind, levels=None, features=None, background=None):
        self.f, self.kind, self.levels = f, kind, levels
        self.features = features  # (centres (n, 2), heights (n,))
        self.background = background  # f(x, y) of the background, sparse maps


def _smooth_field(rng, corr_mm: float, n: int = 256) -> RegularGridInterpolator:
    """A zero-mean unit-variance Gaussian random field on the square (FFT filtered noise)."""
    k = np.fft.fftfreq(n, d=2 * HALF / n)
    kx, ky = np.meshgrid(k, k)
    spec = np.exp(-2 * (np.pi * corr_mm) ** 2 * (kx ** 2 + ky ** 2))
    z = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * spec))
    z = (z - z.mean()) / z.std()
    ax = np.linspace(-HALF, HALF, n)
    return RegularGridInterpolator((ax, ax), z, bounds_error=False, fill_value=None)


def _field_fn(interp):
    def f(x, y):
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        return interp(np.column_stack([y.ravel(), x.ravel()])).reshape(x.shape)
    return f


def _gaussians(c, s, h, bg):
    def f(x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        out = bg(x, y) + np.zeros(np.broadcast(x, y).shape)
        for (cx, cy), si, hi in zip(c, s, h, strict=True):
            out = out + hi * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * si * si))
        return out
    return f


def _sim(name, seed):
    from sim.samples import make_sample
    return make_sample(name, seed=seed)


def fam_phase_boundary(seed):
    s = _sim("phase_boundary", seed)
    return Map(lambda x, y: np.asarray(s.signal(x, y), float), "boundary", levels=[0.5])


def fam_domains(seed):
    s = _sim("domains", seed)
    lv = np.sort(s.levels)
    return Map(lambda x, y: np.asarray(s.signal(x, y), float), "boundary",
               levels=list(0.5 * (lv[1:] + lv[:-1])))


def fam_islands(seed):
    rng = np.random.default_rng([seed, 11])
    g = _field_fn(_smooth_field(rng, 2.5))
    tilt = rng.uniform(-1, 1, 2) * 0.1 / HALF

    def f(x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        return 0.25 + 0.5 * (g(x, y) > 0.3) + tilt[0] * x + tilt[1] * y
    return Map(f, "boundary", levels=[0.5])


def fam_particles(seed):
    s = _sim("particles", seed)
    return Map(lambda x, y: np.asarray(s.signal(x, y), float), "sparse",
               features=(s.centres, s.heights),
               background=lambda x, y: np.full(np.broadcast(x, y).shape, s.background))


def fam_peaks10(seed):
    rng = np.random.default_rng(200 + seed)  # the draws of mq.synthetic(200 + seed, 10, ...)
    c = rng.uniform(-8, 8, (10, 2))
    rng.uniform(0.4, 1.0, 10)
    h = rng.uniform(0.4, 1.0, 10)
    return Map(mq.synthetic(200 + seed, 10, (0.4, 1.0)), "sparse", features=(c, h),
               background=lambda x, y: np.full(np.broadcast(x, y).shape, 0.02))


def fam_specks(seed):
    rng = np.random.default_rng([seed, 13])
    n = 25
    c = rng.uniform(-9, 9, (n, 2))
    s = rng.uniform(0.12, 0.35, n)
    h = rng.uniform(0.15, 1.0, n)
    g = _field_fn(_smooth_field(rng, 4.0))

    def bg(x, y):
        return 0.12 + 0.05 * np.tanh(g(x, y))
    return Map(_gaussians(c, s, h, bg), "sparse", features=(c, h), background=bg)


def fam_bumps(seed):
    rng = np.random.default_rng([seed, 21])
    n = 5
    return Map(_gaussians(rng.uniform(-10, 10, (n, 2)), rng.uniform(2.5, 5.0, n),
                          rng.uniform(0.2, 0.6, n), lambda x, y: 0.1), "smooth")


def fam_ripple(seed):
    rng = np.random.default_rng([seed, 22])
    c = rng.uniform(-12, 12, 2)
    lam = rng.uniform(5.0, 8.0)
    ph = rng.uniform(0, 2 * np.pi)

    def f(x, y):
        r = np.hypot(np.asarray(x, float) - c[0], np.asarray(y, float) - c[1])
        return 0.5 + 0.35 * np.sin(2 * np.pi * r / lam + ph)
    return Map(f, "smooth")


def fam_franke(seed):
    rng = np.random.default_rng([seed, 23])
    flip = rng.integers(0, 2, 2) * 2 - 1
    swap = bool(rng.integers(0, 2))

    def f(x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        u, v = (flip[0] * x / (2 * HALF) + 0.5), (flip[1] * y / (2 * HALF) + 0.5)
        if swap:
            u, v = v, u
        t = (0.75 * np.exp(-((9 * u - 2) ** 2) / 4 - ((9 * v - 2) ** 2) / 4)
             + 0.75 * np.exp(-((9 * u + 1) ** 2) / 49 - (9 * v + 1) / 10)
             + 0.5 * np.exp(-((9 * u - 7) ** 2) / 4 - ((9 * v - 3) ** 2) / 4)
             - 0.2 * np.exp(-((9 * u - 4) ** 2) - (9 * v - 7) ** 2))
        return 0.1 + 0.7 * t
    return Map(f, "smooth")


def fam_grf(seed):
    g = _field_fn(_smooth_field(np.random.default_rng([seed, 31]), 1.2))
    return Map(lambda x, y: np.clip(0.5 + 0.15 * g(x, y), 0.02, None), "texture")


def fam_grains(seed):
    from scipy.spatial import cKDTree
    rng = np.random.default_rng([seed, 32])
    tree = cKDTree(rng.uniform(-HALF, HALF, (80, 2)))
    lv = rng.uniform(0.1, 0.9, 80)

    def f(x, y):
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        return lv[tree.query(np.column_stack([x.ravel(), y.ravel()]))[1]].reshape(x.shape)
    return Map(f, "texture")


def fam_gabor(seed):
    rng = np.random.default_rng([seed, 33])
    th = rng.uniform(0, np.pi, 3)
    per = rng.uniform(2.0, 4.0, 3)
    ph = rng.uniform(0, 2 * np.pi, 3)
    mods = [_field_fn(_smooth_field(rng, 4.0)) for _ in range(3)]

    def f(x, y):
        x, y = np.asarray(x, float), np.asarray(y, float)
        out = 0.5 + np.zeros(np.broadcast(x, y).shape)
        for t, p, q, m in zip(th, per, ph, mods, strict=True):
            a = 0.12 * (1 + np.tanh(m(x, y)))
            out = out + a * np.sin(2 * np.pi * (x * np.cos(t) + y * np.sin(t)) / p + q) / 2
        return np.clip(out, 0.02, None)
    return Map(f, "texture")


#: name -> (kind, split, constructor(seed))
FAMILIES = {
    "sim_phase_boundary": ("boundary", "tuning", fam_phase_boundary),
    "sim_domains": ("boundary", "tuning", fam_domains),
    "islands": ("boundary", "heldout", fam_islands),
    "sim_particles": ("sparse", "tuning", fam_particles),
    "peaks10": ("sparse", "tuning", fam_peaks10),
    "specks": ("sparse", "heldout", fam_specks),
    "bumps": ("smooth", "tuning", fam_bumps),
    "ripple": ("smooth", "tuning", fam_ripple),
    "franke": ("smooth", "heldout", fam_franke),
    "grf": ("texture", "tuning", fam_grf),
    "grains": ("texture", "tuning", fam_grains),
    "gabor": ("texture", "heldout", fam_gabor),
}


# ---------------------------------------------------------------- measures
def _grid():
    g = np.linspace(-HALF, HALF, NG)
    gx, gy = np.meshgrid(g, g)
    return g, gx, gy


def boundary_error(z_true: np.ndarray, z_rec: np.ndarray, levels) -> float:
    """Symmetric mean distance (mm) between the true and reconstructed level contours."""
    return boundary_error_mm(z_true, z_rec, levels, 2 * HALF / (NG - 1))


def detections(m: Map, z_rec: np.ndarray, gx, gy) -> tuple[float, int]:
    """(fraction of features found, false detections) of the reconstructed map."""
    centres, heights = m.features
    return features_found(z_rec, gx[0], gy[:, 0], centres, heights, m.background(gx, gy),
                          R_FOUND)


def scores(m: Map, z_true, z_rec, gx, gy) -> dict:
    out = {"rmse": float(np.sqrt(np.mean((z_rec - z_true) ** 2)))}
    if m.kind == "boundary":
        out["boundary_error_mm"] = boundary_error(z_true, z_rec, m.levels)
    if m.kind == "sparse":
        out["found_fraction"], out["false_detections"] = detections(m, z_rec, gx, gy)
    return out


def better(kind: str, a: dict, b: dict) -> bool:
    """a is better than b by the kind's primary measure (ties: RMSE)."""
    k = PRIMARY[kind]
    if kind == "sparse":
        return (a[k], -a["false_detections"], -a["rmse"]) > (b[k], -b["false_detections"],
                                                             -b["rmse"])
    return (a[k], a["rmse"]) < (b[k], b["rmse"])


# ---------------------------------------------------------------- reconstructions
def gp_map(ms: list[Measurement], gx, gy, agent: bool = True) -> np.ndarray:
    eng = Engine.from_measurements(mq.config(len(ms) + 1, agent=agent), ms)
    eng.wait_for_training()
    mu = eng.posterior_mean(np.column_stack([gx.ravel(), gy.ravel()]))
    eng.close()
    return mu.reshape(gx.shape)


def bilinear_map(k: int, ms: list[Measurement], gx, gy) -> np.ndarray:
    ax = np.linspace(-HALF, HALF, k)
    vals = np.empty((k, k))
    for m in ms:
        i = int(round((m.positions["y"] + HALF) / (2 * HALF) * (k - 1)))
        j = int(round((m.positions["x"] + HALF) / (2 * HALF) * (k - 1)))
        vals[i, j] = m.values["det"]
    est = RegularGridInterpolator((ax, ax), vals)(np.column_stack([gy.ravel(), gx.ravel()]))
    return est.reshape(gx.shape)


def raster_best(m: Map, ms, z_true, gx, gy, k: int | None, plain: bool) -> tuple[dict, dict]:
    """Best reconstruction of raster data: (scores + 'reconstruction', {name: map})."""
    maps = {"gp_agent_model": gp_map(ms, gx, gy)}
    if k is not None:
        maps["bilinear"] = bilinear_map(k, ms, gx, gy)
    if plain:
        maps["gp_engine_defaults"] = gp_map(ms, gx, gy, agent=False)
    best = None
    for name, z in maps.items():
        s = {**scores(m, z_true, z, gx, gy), "reconstruction": name}
        if best is None or better(m.kind, s, best):
            best = s
    return best, maps[best["reconstruction"]]


def coarse_fitting(budget_s: float) -> int:
    """The largest k whose full k x k serpentine raster fits in ``budget_s``."""
    k = 2
    while mq.beamtime(mq.serpentine(k + 1))[-1] <= budget_s + 1e-9:
        k += 1
    return k


def run_agent(f, T: float, rng, budgeted: bool = False
              ) -> tuple[list[list[Measurement]], list[float], list[dict]]:
    """The agent (one point per ask, from where the motors are); the measurements at each
    checkpoint of FRACTIONS, the beamtime spent, and the start-up design's size and
    decision. Anytime: one run until T, snapshots at the checkpoints. Budgeted: one run per
    checkpoint, told its beamtime (stop.max_time_s)."""
    if not budgeted:
        return _agent_until(f, [frac * T for frac in FRACTIONS], rng, None)
    snaps, times, designs = [], [], []
    for frac in FRACTIONS:
        s, t, d = _agent_until(f, [frac * T], rng, frac * T)
        snaps, times, designs = snaps + s, times + t, designs + d
    return snaps, times, designs


def _agent_until(f, checkpoints_s, rng, budget_s):
    # the benchmark's clock is simulated beamtime; max_time_s (wall clock in the engine) is
    # the budget the agent plans with and is far longer than the run's wall time
    stop = {"max_points": 100_000} if budget_s is None else {"max_points": 100_000,
                                                                "max_time_s": budget_s}
    eng = Engine(mq.config(100_000, {"stop": stop}))
    v, oh = mq.SETUP["velocity_mm_s"], mq.SETUP["overhead_s"]
    pos, t, seq, snaps, times = None, 0.0, 0, [], []
    for limit in checkpoints_s:
        while True:
            prop = eng.ask(1, current_position=pos)
            if prop.phase == "done":
                raise RuntimeError(f"the agent stopped early: {prop.stop_reason}")
            p = prop.points[0]
            dt = oh + (0.0 if pos is None else max(abs(p["x"] - pos["x"]),
                                                     abs(p["y"] - pos["y"])) / v)
            if t + dt > limit + 1e-9:  # the next point does not fit: checkpoint
                eng.release([p])
                break
            t += dt
            xy = np.array([[p["x"], p["y"]]])
            eng.tell(mq.measure(f, xy, rng, seq)[0])
            seq, pos = seq + 1, p
        snaps.append(eng.measurements)
        times.append(t)
    design = eng.status()["initial_design"]
    eng.close()
    return snaps, times, [design] * len(checkpoints_s)


#: engine settings that change a raster's GP reconstruction (the baseline cache's key)
MODEL_KEYS = ("model", "kernel", "prior_mean", "training", "default_noise_variance")


def baselines(m: Map, name: str, seed: int, figures: bool, cache: dict | None) -> tuple:
    """Raster and coarse-raster scores (and the raster-at-T map for figures)."""
    key = json.dumps([name, seed, NG, {k: mq.AGENT_CONFIG.get(k) for k in MODEL_KEYS}],
                     sort_keys=True)
    if cache is not None and key in cache and not figures:
        return cache[key], {}
    rng = np.random.default_rng([seed, 2])
    g, gx, gy = _grid()
    z_true = m.f(gx, gy)
    full = mq.serpentine(GRID_N)
    bt = mq.beamtime(full)
    T = float(bt[-1])
    ms_full = mq.measure(m.f, full, rng)
    row = {"T_s": T, "raster": {}, "coarse": {}}
    keep = {}
    for frac, fn in zip(FRACTIONS, FRAC_NAMES, strict=True):
        n = int(np.sum(bt <= frac * T + 1e-9))
        is_full = n == len(full)
        s, z = raster_best(m, ms_full[:n], z_true, gx, gy, GRID_N if is_full else None,
                           plain=is_full)
        row["raster"][fn] = {**s, "n_points": n, "beamtime_s": float(bt[n - 1])}
        if is_full:
            keep["raster_T"] = (z, full)
            row["coarse"][fn] = {**s, "k": GRID_N, "n_points": n,
                                 "beamtime_s": float(bt[n - 1])}
            continue
        k = coarse_fitting(frac * T)
        path = mq.serpentine(k)
        s, _ = raster_best(m, mq.measure(m.f, path, rng), z_true, gx, gy, k, plain=False)
        row["coarse"][fn] = {**s, "k": k, "n_points": k * k,
                             "beamtime_s": float(mq.beamtime(path)[-1])}
    if cache is not None:
        cache[key] = row
    return row, keep


def one(name: str, seed: int, figures: bool, cache: dict | None = None,
        budgeted: bool = False) -> dict:
    kind, split, make = FAMILIES[name]
    m = make(seed)
    g, gx, gy = _grid()
    z_true = m.f(gx, gy)
    t0 = time.perf_counter()
    base, keep = baselines(m, name, seed, figures, cache)
    T = base["T_s"]
    row = {"family": name, "kind": kind, "split": split, "seed": seed,
           **json.loads(json.dumps(base)), "agent": {}}
    # the agent's noise stream is its own, so the baselines may be cached while iterating
    snaps, times, designs = run_agent(m.f, T, np.random.default_rng([seed, 1]), budgeted)
    for ms, t, design, fn in zip(snaps, times, designs, FRAC_NAMES, strict=True):
        z = gp_map(ms, gx, gy)
        row["agent"][fn] = {**scores(m, z_true, z, gx, gy), "n_points": len(ms),
                            "beamtime_s": t, "design": design}
        if fn in ("T/2", "T"):
            keep[f"agent_{fn}"] = (z, np.array([[q.positions["x"], q.positions["y"]]
                                                 for q in ms]))
    row["runtime_s"] = time.perf_counter() - t0
    if figures:
        row["_fig"] = {"truth": z_true, **keep}
    return row


# ---------------------------------------------------------------- the seed's gpCAM example
def gpcam_example(seed: int = 0, n: int = 300) -> dict:
    """sin(|x|) on [[3, 45.8], [4, 47]], 10 initial points, noise-free, no travel."""
    lo, hi = np.array([3.0, 4.0]), np.array([45.8, 47.0])
    base = {"coordinates": [{"name": "x", "low": 3.0, "high": 45.8},
                            {"name": "y", "low": 4.0, "high": 47.0}], "value": "y",
            "seed": seed, **{k: v for k, v in mq.AGENT_CONFIG.items()
                             if k not in ("overhead_s", "coordinates")}}
    base["training"] = {**base.get("training", {}), "background": False}
    base["initial_design"] = {**base.get("initial_design", {}), "n_points": 10}
    cfg = make_engine_config({**base, "stop": {"max_points": n}})
    score_cfg = make_engine_config({**base, "stop": {"max_points": n + 1}})

    def f(p):
        return float(np.sin(np.linalg.norm(p)))

    def meas(pts):
        return [Measurement(run_uid="gpcam", seq=i, positions={"x": p[0], "y": p[1]},
                            values={"y": f(p)}) for i, p in enumerate(pts)]

    gxs = np.linspace(lo[0], hi[0], 201)
    gys = np.linspace(lo[1], hi[1], 201)
    gx, gy = np.meshgrid(gxs, gys)
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    truth = np.sin(np.linalg.norm(grid, axis=1))

    def rmse(ms):
        e = Engine.from_measurements(score_cfg, ms)
        e.wait_for_training()
        mu = e.posterior_mean(grid)
        e.close()
        return float(np.sqrt(np.mean((mu - truth) ** 2)))

    eng = Engine(cfg)
    seq = 0
    while True:
        prop = eng.ask(1)
        if prop.phase == "done":
            break
        for p in prop.points:
            eng.tell(Measurement(run_uid="gpcam", seq=seq, positions=p,
                                 values={"y": f(np.array([p["x"], p["y"]]))}))
            seq += 1
    agent = rmse(eng.measurements)
    eng.close()
    rng = np.random.default_rng(seed)
    rand = rmse(meas(rng.uniform(lo, hi, (n, 2))))
    k = int(np.sqrt(n))
    ax = [np.linspace(lo[i], hi[i], k) for i in range(2)]
    rast = rmse(meas(np.array([[a, b] for b in ax[1] for a in ax[0]])))
    return {"seed": seed, "n_points": n, "agent_rmse": agent, "random_rmse": rand,
            f"raster_{k}x{k}_rmse": rast, "agent_over_random": agent / rand}


# ---------------------------------------------------------------- summary, figures
def summarise(rows: list[dict]) -> dict:
    """Medians over maps and seeds, per split and kind, of each measure and the targets."""
    out = {}
    for split in ("tuning", "heldout"):
        for kind in KINDS:
            rs = [r for r in rows if r["split"] == split and r["kind"] == kind]
            if not rs:
                continue
            meas = ["rmse"] + {"boundary": ["boundary_error_mm"],
                               "sparse": ["found_fraction", "false_detections"]}.get(kind, [])
            s = {"n_runs": len(rs), "families": sorted({r["family"] for r in rs})}
            for q in meas:
                for meth in ("agent", "raster", "coarse"):
                    for fn in FRAC_NAMES:
                        s[f"{meth}_{q}@{fn}"] = float(np.median([r[meth][fn][q] for r in rs]))
            for fn in FRAC_NAMES:
                s[f"agent_n_points@{fn}"] = float(np.median([r["agent"][fn]["n_points"]
                                                             for r in rs]))
            # targets (issue 11), as medians over maps and seeds
            def ratio(q, a, b, m="raster", rs=rs):
                return float(np.median([r["agent"][a][q] / max(r[m][b][q], 1e-12)
                                        for r in rs]))
            t = {}
            if kind == "boundary":
                t["boundary_error_agent@T/3_over_raster@T"] = ratio(
                    "boundary_error_mm", "T/3", "T")
                t["rmse_ratio_agent_over_raster@T"] = ratio("rmse", "T", "T")
                t["met"] = bool(t["boundary_error_agent@T/3_over_raster@T"] <= 1.0 and
                                t["rmse_ratio_agent_over_raster@T"] <= 0.75)
            elif kind == "sparse":
                t["found_agent@T/2_minus_raster@T"] = float(np.median(
                    [r["agent"]["T/2"]["found_fraction"] - r["raster"]["T"]["found_fraction"]
                     for r in rs]))
                t["met"] = bool(t["found_agent@T/2_minus_raster@T"] >= 0.0)
            else:
                t["rmse_ratio_agent_over_raster@T"] = ratio("rmse", "T", "T")
                t["rmse_ratio_agent_over_coarse@T/3"] = ratio("rmse", "T/3", "T/3", "coarse")
                t["rmse_ratio_agent_over_coarse@T/2"] = ratio("rmse", "T/2", "T/2", "coarse")
                t["met"] = bool(t["rmse_ratio_agent_over_raster@T"] <= 1.05 and
                                t["rmse_ratio_agent_over_coarse@T/3"] <= 1.0 and
                                t["rmse_ratio_agent_over_coarse@T/2"] <= 1.0)
            s["targets"] = t
            out[f"{split}/{kind}"] = s
    return out


def print_table(summary: dict) -> None:
    print(f"\n{'split/kind':18s} {'measure':18s} {'method':7s} "
          + " ".join(f"{fn:>9s}" for fn in FRAC_NAMES))
    for key, s in summary.items():
        kind = key.split("/")[1]
        meas = {"boundary": ["boundary_error_mm", "rmse"],
                "sparse": ["found_fraction", "false_detections"]}.get(kind, ["rmse"])
        for q in meas:
            for meth in ("agent", "raster", "coarse"):
                print(f"{key:18s} {q:18s} {meth:7s} " + " ".join(
                    f"{s[f'{meth}_{q}@{fn}']:9.4f}" for fn in FRAC_NAMES))
        print(f"{key:18s} targets: " + ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in s["targets"].items()))


def figure(kind: str, rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in rows if r["kind"] == kind and "_fig" in r]
    if not rs:
        return
    # one row per family (its lowest seed): truth, raster at T, agent at T/2, agent at T
    seen, pick = set(), []
    for r in sorted(rs, key=lambda r: r["seed"]):
        if r["family"] not in seen:
            seen.add(r["family"])
            pick.append(r)
    fig, axes = plt.subplots(len(pick), 4, figsize=(13, 3.3 * len(pick)), squeeze=False)
    ext = (-HALF, HALF, -HALF, HALF)
    q = PRIMARY[kind]
    for ax_row, r in zip(axes, pick, strict=True):
        F = r["_fig"]
        vmin, vmax = np.percentile(F["truth"], [0.5, 99.5])
        panels = [("truth", F["truth"], None),
                  (f"raster at T ({r['raster']['T']['n_points']} pts)\n{q}="
                   f"{r['raster']['T'][q]:.3g}", *F["raster_T"]),
                  (f"agent at T/2 ({r['agent']['T/2']['n_points']} pts)\n{q}="
                   f"{r['agent']['T/2'][q]:.3g}", *F["agent_T/2"]),
                  (f"agent at T ({r['agent']['T']['n_points']} pts)\n{q}="
                   f"{r['agent']['T'][q]:.3g}", *F["agent_T"])]
        for ax, (title, z, pts) in zip(ax_row, panels, strict=True):
            ax.imshow(z, origin="lower", extent=ext, vmin=vmin, vmax=vmax, cmap="viridis")
            if pts is not None:
                ax.plot(pts[:, 0], pts[:, 1], "-", color="w", lw=0.3, alpha=0.6)
                ax.plot(pts[:, 0], pts[:, 1], ".", color="r", ms=1.5)
            ax.set_title(f"{r['family']} s{r['seed']}: {title}" if pts is None else title,
                         fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _worker(args):
    name, seed, figures, agent_config, cache_path, budgeted = args
    mq.AGENT_CONFIG.clear()
    mq.AGENT_CONFIG.update(agent_config)
    cache = None
    if cache_path is not None:
        p = Path(cache_path)
        cache = json.loads(p.read_text()) if p.exists() else {}
    n0 = None if cache is None else len(cache)
    r = one(name, seed, figures, cache, budgeted)
    if cache is not None and len(cache) > n0:  # one entry per job: merge under a lock file
        import fcntl
        with open(f"{cache_path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            old = json.loads(p.read_text()) if p.exists() else {}
            p.write_text(json.dumps({**old, **cache}))
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="seed 0, no gpCAM example, no figures")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--split", choices=("tuning", "heldout", "all"), default="all")
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    ap.add_argument("--families", nargs="+", help="subset of family names")
    ap.add_argument("--agent-config", type=Path, default=SHIPPED)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--baseline-cache", type=Path, help="while iterating only: reuse raster "
                    "scores (same seeds, same model settings) from this JSON file")
    ap.add_argument("--no-gpcam-example", action="store_true")
    ap.add_argument("--budgeted", action="store_true", help="one agent run per checkpoint, "
                    "told its beamtime (stop.max_time_s); default: one anytime run until T")
    ap.add_argument("--output", type=Path, default=RESULTS / "map_kinds.json")
    ap.add_argument("--figure-prefix", default="map_kinds")
    args = ap.parse_args()
    mq.AGENT_CONFIG.update(model_settings(args.agent_config))
    resolution = coordinate_resolution(args.agent_config)
    if resolution is not None:  # the settings' footprint, on the benchmark's square
        coord = {"low": -HALF, "high": HALF, "units": "mm",
                 "velocity": mq.SETUP["velocity_mm_s"], "resolution": resolution}
        mq.AGENT_CONFIG["coordinates"] = [{"name": n, **coord} for n in ("x", "y")]
    for item in args.set:
        k, _, v = item.partition("=")
        mq.AGENT_CONFIG[k] = json.loads(v)
    seeds = args.seeds[:1] if args.quick else args.seeds
    figures = not (args.no_figures or args.quick)
    names = [n for n, (kind, split, _) in FAMILIES.items()
             if kind in args.kinds and args.split in ("all", split)
             and (not args.families or n in args.families)]
    cache = None if args.baseline_cache is None else str(args.baseline_cache)
    jobs = [(n, s, figures, dict(mq.AGENT_CONFIG), cache, args.budgeted)
            for s in seeds for n in names]
    t0 = time.perf_counter()
    rows = []

    def report(r):
        a, ra, c = r["agent"], r["raster"], r["coarse"]
        q = PRIMARY[r["kind"]]
        print(f"{r['family']:18s} s{r['seed']} {r['split']:7s} {q}: " + " | ".join(
            f"{fn} agent {a[fn][q]:.4f} raster {ra[fn][q]:.4f} coarse {c[fn][q]:.4f}"
            for fn in FRAC_NAMES) + f" | rmse@T {a['T']['rmse']:.4f}/{ra['T']['rmse']:.4f}"
            f" | agent pts {a['T']['n_points']} | {r['runtime_s']:.0f}s", flush=True)

    if args.jobs > 1:
        from multiprocessing import get_context
        with get_context("spawn").Pool(args.jobs) as pool:
            for r in pool.imap_unordered(_worker, jobs):
                rows.append(r)
                report(r)
    else:
        for j in jobs:
            r = _worker(j)
            rows.append(r)
            report(r)
    rows.sort(key=lambda r: (list(FAMILIES).index(r["family"]), r["seed"]))
    summary = summarise(rows)
    print_table(summary)
    example = None
    if not (args.quick or args.no_gpcam_example):
        example = [gpcam_example(s) for s in seeds]
        for e in example:
            print(f"gpCAM example s{e['seed']}: agent {e['agent_rmse']:.4f} random "
                  f"{e['random_rmse']:.4f} ratio {e['agent_over_random']:.2f} "
                  f"({ {k: round(v, 4) for k, v in e.items() if k.startswith('raster')} })")
    runtime = time.perf_counter() - t0
    print(f"runtime {runtime:.0f} s")
    if figures:
        for kind in args.kinds:
            figure(kind, rows, args.output.parent / f"{args.figure_prefix}_{kind}.png")
    for r in rows:
        r.pop("_fig", None)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "setup": {**mq.SETUP, "grid_n": GRID_N, "score_grid": NG, "r_found_mm": R_FOUND,
                  "fractions": FRACTIONS, "seeds": seeds, "budgeted": args.budgeted,
                  "split": {n: s for n, (_, s, _) in FAMILIES.items()},
                  "agent_config_overrides": mq.AGENT_CONFIG,
                  "agent_config": mq.config(1).to_jsonable()},
        "summary": summary, "gpcam_example": example, "runtime_s": runtime,
        "results": rows}, indent=1, default=float))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
