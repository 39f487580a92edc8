"""Per-frame time of ``bluesky.plans.count([beam_camera], num=N)`` with each device flavour.

Starts the simulated beamline (``python -m sim``, configs/beamline.yaml) on a free loopback
port, sets ``cam1:AcquireTime`` (default 0.01 s) and, for the ophyd-async ``BeamCamera`` and
the classic ``ClassicBeamCamera``, runs ``bp.count([camera], num=N)`` ``--repeats`` times
(after an untimed 5-frame warm-up). Each frame is Acquire (put completes once the IOC has
exposed, rendered the frame and posted NDStats), the wait for ``Stats1:ArrayCounter_RBV`` to
move, and the read of the 8 statistics; the image is not read.

Per-frame time = interval between consecutive event documents as they reach a callback
(``time.perf_counter``), so run open/close is not in it. Overhead = per-frame time -
AcquireTime: the part of each frame that is not exposure. Reported as median and p90 over
all frames of all repeats, plus the mean from each run's wall time / N (which does include
the run's open and close).

``sim_frame_compute_ms`` is the simulator's per-frame CPU work (render a frame of the
aligned beam + NDStats + int16 conversion), timed in this process: a floor for the
overhead that a real camera would not have in this form.

Usage: ``python benchmarks/bench_camera_count.py [--frames 200] [--exposure-s 0.01]
[--repeats 3]``. Writes ``benchmarks/results/camera_count.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # configs/ etc. even where the editable install predates them

from plans.processes import (  # noqa: E402
    ca_client_environment,
    free_port_pair,
    simulated_beamline,
)

RESULT = ROOT / "benchmarks" / "results" / "camera_count.json"
BEAMLINE = ROOT / "configs" / "beamline.yaml"


def time_counts(RE, camera, frames: int, repeats: int) -> dict:
    """Event-to-event intervals (ms) and per-run wall time / frames (ms)."""
    import bluesky.plans as bp

    intervals, per_run = [], []
    RE(bp.count([camera], num=5))  # warm-up: connections, descriptors, caches
    for _ in range(repeats):
        stamps: list[float] = []
        t0 = time.perf_counter()
        RE(bp.count([camera], num=frames), lambda name, doc, stamps=stamps: (
            name == "event" and stamps.append(time.perf_counter())))
        per_run.append(1e3 * (time.perf_counter() - t0) / frames)
        assert len(stamps) == frames, f"{len(stamps)} events for {frames} frames"
        intervals += [1e3 * (b - a) for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"interval_ms": intervals, "run_mean_ms": per_run}


def summarise(raw: dict, exposure_s: float) -> dict:
    import numpy as np

    exposure_ms = 1e3 * exposure_s
    frame = np.asarray(raw["interval_ms"])
    overhead = frame - exposure_ms
    return {
        "frames_timed": int(frame.size),
        "frame_median_ms": round(float(np.median(frame)), 2),
        "frame_p90_ms": round(float(np.percentile(frame, 90)), 2),
        "overhead_median_ms": round(float(np.median(overhead)), 2),
        "overhead_p90_ms": round(float(np.percentile(overhead, 90)), 2),
        "overhead_max_ms": round(float(overhead.max()), 2),
        "run_mean_ms": [round(v, 2) for v in raw["run_mean_ms"]],
        "run_mean_overhead_ms": round(statistics.median(raw["run_mean_ms"]) - exposure_ms, 2),
    }


def sim_frame_compute_ms(exposure_s: float, n: int = 50) -> float:
    """Median ms to render one aligned-beam frame and compute its NDStats, in-process."""
    import numpy as np

    from sim.config import load_config
    from sim.optics.camera import nd_stats, render
    from sim.optics_train import OpticsTrain

    full = load_config(BEAMLINE)
    train = OpticsTrain(full.beamline, full.simulation.optics, full.simulation.seed)
    beam = train.model.beam(train.optimum)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        frame = render(beam, train.params.camera, exposure_s, rng)
        frame.ravel().astype(np.int16)
        nd_stats(frame, full.simulation.optics.centroid_threshold)
        times.append(1e3 * (time.perf_counter() - t0))
    return round(statistics.median(times), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--exposure-s", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    port = free_port_pair()
    # libca and caproto read these once, at first use: set before importing CA clients.
    os.environ.update(ca_client_environment(port))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine
    from ophyd_async.plan_stubs import ensure_connected

    from devices import (
        disconnect_channel_access,
        load_beamline_config,
        make_beamline,
        make_ophyd_beamline,
    )

    cfg = load_beamline_config(BEAMLINE)
    camera_name = cfg.of_kind("camera")[0].name
    raw = {}
    with tempfile.TemporaryDirectory() as logs, \
            simulated_beamline(BEAMLINE, port, Path(logs)):
        RE = RunEngine()
        bl = make_beamline(cfg)
        RE(ensure_connected(bl, timeout=20))
        camera = getattr(bl, camera_name)
        RE(bps.mv(camera.acquire_time, args.exposure_s))
        raw["ophyd_async"] = time_counts(RE, camera, args.frames, args.repeats)
        obl = make_ophyd_beamline(cfg, timeout_s=10.0)
        ccamera = getattr(obl, camera_name)
        ccamera.acquire_time.set(args.exposure_s).wait(5)
        raw["ophyd_classic_caproto"] = time_counts(RE, ccamera, args.frames, args.repeats)
        obl.destroy()
        disconnect_channel_access()  # before the IOC goes: no libca disconnect noise
    load_after = os.getloadavg()[0]
    compute_ms = sim_frame_compute_ms(args.exposure_s)

    out = {
        "frames": args.frames, "exposure_s": args.exposure_s, "repeats": args.repeats,
        "camera": {"size_x": cfg.of_kind("camera")[0].size_x,
                   "size_y": cfg.of_kind("camera")[0].size_y},
        "sim_frame_compute_ms": compute_ms,
        # 2 shared cores: figures scale with contention, so record it
        "load_average_1min": {"before": load_before, "after": load_after},
        "flavours": {k: {**summarise(v, args.exposure_s),
                         "interval_ms": [round(x, 3) for x in v["interval_ms"]]}
                     for k, v in raw.items()},
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=2))
    for name, r in out["flavours"].items():
        print(f"{name:24s} frame {r['frame_median_ms']:6.2f} ms median, "
              f"{r['frame_p90_ms']:6.2f} p90  (exposure {1e3 * args.exposure_s:.1f} ms; "
              f"overhead {r['overhead_median_ms']:.2f} median, {r['overhead_p90_ms']:.2f} p90, "
              f"{r['overhead_max_ms']:.1f} max; run mean {r['run_mean_overhead_ms']:.2f})")
    print(f"sim frame compute (render + NDStats, in-process): {compute_ms:.2f} ms")
    print(f"load average {load_before:.2f} -> {load_after:.2f}; wrote {RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
