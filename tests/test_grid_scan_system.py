"""grid_scan over the hidden sample with both device flavours, checked against ground truth.

Threshold: the image is det/i0 (normalises ring decay). At TP = 10 ms and the configured
flux (det_cps 2e5 at signal 1, i0_cps 1e6, dark 5 cps), a point of signal s has
det ~ Poisson(2000 s + 0.05): relative noise 1/sqrt(2000 s), i.e. an absolute noise std of
sqrt(s / 2000) in signal units -- 0.003 on the 0.02 background, 0.022 at s = 1 -- while
i0 (1e4 counts) adds 1 %. The scan window is the one of largest truth variance (std of the
truth over it ~0.1-0.3), so the expected Pearson r = sqrt(var_T / (var_T + var_noise)) is
> 0.99 (computed below from the truth itself). r > 0.9 leaves room for position errors and
ring/shutter effects while still failing for a shifted, transposed or unrelated image
(r ~ 0 for those).
"""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine

from tests.devices_system_helpers import beamline_for

pytestmark = pytest.mark.system

N = 9  # points per axis
HALF_WIDTH_MM = 1.2  # window half width: pitch 0.3 mm resolves the 0.15-0.45 mm blobs
EXPOSURE_S = 0.01
FAST_VELO = 50.0  # mm/s (VMAX); restored after the test. Cuts motion time by 10x.


@pytest.fixture(scope="module")
def truth(sim_beamline):
    from sim.config import load_config
    from sim.samples import make_sample

    full = load_config(sim_beamline.config_path)
    x, y = full.beamline.motor("sample_x"), full.beamline.motor("sample_y")
    extent = (x.low_limit, x.high_limit, y.low_limit, y.high_limit)
    return full, make_sample(full.simulation.sample, full.simulation.seed, extent)


def best_window(sample, limit: float = 8.0) -> tuple[float, float]:
    """Centre (mm) of the N x N scan window with the largest truth variance."""
    offsets = np.linspace(-HALF_WIDTH_MM, HALF_WIDTH_MM, N)
    best, centre = -1.0, (0.0, 0.0)
    for cx in np.arange(-limit, limit + 0.01, 0.5):
        for cy in np.arange(-limit, limit + 0.01, 0.5):
            gx, gy = np.meshgrid(cx + offsets, cy + offsets)
            var = float(np.var(sample.signal(gx, gy)))
            if var > best:
                best, centre = var, (float(cx), float(cy))
    return centre


def expected_r(truth_values: np.ndarray, flux) -> float:
    """Pearson r expected from Poisson noise alone, for det/i0 in signal units."""
    det_counts = flux.det_cps * EXPOSURE_S
    noise_var = np.mean(truth_values / det_counts) + 1.0 / (flux.i0_cps * EXPOSURE_S) * np.mean(
        truth_values**2)
    return float(np.sqrt(np.var(truth_values) / (np.var(truth_values) + noise_var)))


@pytest.fixture(scope="module")
def RE():
    return RunEngine(call_returns_result=True)


@pytest.mark.parametrize("flavour", ["ophyd_async", "classic"])
def test_grid_scan_matches_ground_truth(RE, sim_beamline, truth, flavour):
    with beamline_for(flavour, RE, sim_beamline.config_path) as bl:
        grid_scan_and_check(RE, bl, flavour, *truth)


def grid_scan_and_check(RE, bl, flavour, full, sample) -> None:
    x, y = bl.sample_stage.x, bl.sample_stage.y
    cx, cy = best_window(sample)
    events = []
    RE(bps.mv(bl.scaler.preset_time, EXPOSURE_S, x.velocity, FAST_VELO, y.velocity, FAST_VELO))
    try:
        RE(bp.grid_scan([bl.scaler], y, cy - HALF_WIDTH_MM, cy + HALF_WIDTH_MM, N,
                        x, cx - HALF_WIDTH_MM, cx + HALF_WIDTH_MM, N, snake_axes=True),
           lambda name, doc: name == "event" and events.append(doc["data"]))
    finally:
        velo = full.beamline.motor("sample_x").velocity
        RE(bps.mv(x.velocity, velo, y.velocity, velo))

    assert len(events) == N * N
    xs = np.array([e["sample_x"] for e in events])
    ys = np.array([e["sample_y"] for e in events])
    image = np.array([e["det"] / e["i0"] for e in events])
    t = sample.signal(xs, ys, 8900.0)
    r = float(np.corrcoef(image, t)[0, 1])
    r_expected = expected_r(t, full.simulation.flux)
    print(f"{flavour}: window ({cx}, {cy}) mm, Pearson r {r:.4f}, expected {r_expected:.4f}")
    assert r_expected > 0.95, f"window at ({cx}, {cy}) has too little contrast"
    assert r > 0.9, f"{flavour}: Pearson r {r:.3f} (expected ~{r_expected:.3f})"
    # positions are where the grid asked for (verified moves)
    assert np.allclose(sorted(set(np.round(xs, 3))),
                       np.round(np.linspace(cx - HALF_WIDTH_MM, cx + HALF_WIDTH_MM, N), 3))
