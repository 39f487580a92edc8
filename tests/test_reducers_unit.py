"""Reducers on documents from a real RunEngine with ophyd.sim devices (no service)."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import grid_scan, list_scan
from ophyd.sim import SynAxis, SynSignal

from agent import doc_codec
from agent.errors import MessageError
from agent.reducers import ImageReducer, ScalarReducer, image_moments


@pytest.fixture
def beamline():
    sx, sy = SynAxis(name="sample_x"), SynAxis(name="sample_y")
    i0 = SynSignal(name="i0", func=lambda: 0.0 if sx.position > 1.5 else 1.0e5)
    det = SynSignal(name="det", func=lambda: math.nan if sy.position > 1.5
                    else 400.0 + 100.0 * sx.position)
    return sx, sy, i0, det


def test_scalar_reducer_normalises_and_propagates_counting_errors(beamline):
    sx, sy, i0, det = beamline
    got = []
    reducer = ScalarReducer("det_norm", "det", "i0", positions={"x": "sample_x", "y": "sample_y"},
                            sink=got.append)
    RE = RunEngine({})
    RE.subscribe(reducer)
    (uid,) = RE(grid_scan([det, i0], sx, -1, 1, 3, sy, -1, 1, 2))
    assert [m.seq for m in got] == list(range(6)) and {m.run_uid for m in got} == {uid}
    m = got[0]
    d, mon = 400.0 + 100.0 * m.positions["x"], 1.0e5
    assert m.values["det_norm"] == pytest.approx(d / mon)
    assert m.variances["det_norm"] == pytest.approx(d / mon**2 + d**2 / mon**3)
    assert m.positions == {"x": -1.0, "y": -1.0} and m.failure is None


def test_bad_data_becomes_a_failed_measurement_not_a_crash(beamline):
    sx, sy, i0, det = beamline
    got = []
    reducer = ScalarReducer(positions={"x": "sample_x", "y": "sample_y"}, sink=got.append)
    RE = RunEngine({})
    RE.subscribe(reducer)
    RE(list_scan([det, i0], sx, [0.0, 2.0, 0.0], sy, [0.0, 0.0, 2.0]))
    assert got[0].failure is None
    assert "monitor i0=0.0 <= 0" in got[1].failure and not got[1].values
    assert "det=nan" in got[2].failure
    assert (reducer.n_sent, reducer.n_failed) == (3, 2)


def test_missing_position_is_dropped_and_counted(beamline):
    sx, sy, i0, det = beamline
    got = []
    reducer = ScalarReducer(positions={"x": "sample_x", "z": "sample_z"}, sink=got.append)
    RE = RunEngine({})
    RE.subscribe(reducer)
    RE(list_scan([det, i0], sx, [0.0, 1.0]))
    assert got == [] and reducer.n_unplaced == 2


def test_image_moments_of_a_gaussian_spot():
    ys, xs = np.indices((64, 80), dtype=float)
    image = 1000 * np.exp(-((xs - 30.5) ** 2 / (2 * 4.0**2) + (ys - 20.0) ** 2 / (2 * 3.0**2)))
    total, cx, cy, sx, sy = image_moments(image)
    assert (cx, cy) == (pytest.approx(30.5, abs=1e-6), pytest.approx(20.0, abs=1e-6))
    assert (sx, sy) == (pytest.approx(4.0, rel=1e-3), pytest.approx(3.0, rel=1e-3))
    assert total == pytest.approx(1000 * 2 * math.pi * 4 * 3, rel=1e-3)


def test_image_reducer_roi_in_full_image_pixels():
    got = []
    reducer = ImageReducer("cam_image", roi=(10, 40, 20, 60), positions={"x": "sample_x"},
                           sink=got.append)
    image = np.zeros((64, 80))
    image[25, 30] = 50.0
    image[5, 5] = 1e6  # outside the ROI: ignored
    reducer("start", {"uid": "run-1", "time": 0.0})
    reducer("descriptor", {"uid": "d1", "name": "primary", "run_start": "run-1"})
    event = {"descriptor": "d1", "seq_num": 1, "time": 1.0, "uid": "e1",
             "data": {"cam_image": image, "sample_x": 0.5}, "timestamps": {}}
    reducer("event", event)
    reducer("event", {**event, "seq_num": 2, "data": {"cam_image": np.zeros((64, 80)),
                                                       "sample_x": 0.6}})
    v = got[0].values
    assert (v["roi_sum"], v["roi_centroid_x_px"], v["roi_centroid_y_px"]) == (50.0, 30.0, 25.0)
    assert got[0].variances["roi_sum"] == 50.0
    assert "ROI sum=0.0" in got[1].failure


def test_doc_codec_round_trips_arrays_and_refuses_objects():
    doc = {"data": {"img": np.arange(12, dtype=np.uint16).reshape(3, 4), "v": np.float64(2.5)}}
    back = doc_codec.loads(doc_codec.dumps(doc))
    assert back["data"]["img"].dtype == np.uint16 and back["data"]["img"][2, 3] == 11
    assert back["data"]["v"] == 2.5
    with pytest.raises(TypeError, match="dtype object"):
        doc_codec.dumps({"a": np.array([object()], dtype=object)})


def test_doc_codec_never_unpickles():
    # msgpack_numpy decodes {nd: True, kind: "O"} with pickle.loads; our codec has no such path
    evil = msgpack.packb({b"nd": True, b"kind": b"O", b"type": "|O", b"shape": [1],
                          b"data": b"cos\nsystem\n(S'echo pwned'\ntR."}, use_bin_type=True)
    decoded = doc_codec.loads(evil)
    assert isinstance(decoded[b"data"], bytes)  # stays inert bytes
    header = msgpack.packb(["|O", [1]])
    with pytest.raises(MessageError, match="dtype"):
        doc_codec.loads(msgpack.packb({"a": msgpack.ExtType(42, header + b"x" * 8)}))
    with pytest.raises(MessageError, match="ext type=7"):
        doc_codec.loads(msgpack.packb({"a": msgpack.ExtType(7, b"")}))
