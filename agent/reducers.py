"""Reducers: bluesky callbacks turning a run's documents into Measurements for the agent.

Delivery, by default acknowledged and exactly once (``agent.delivery.MeasurementSender``):
``RE.subscribe(ScalarReducer(..., request_address="tcp://127.0.0.1:5580"))`` sends each
measurement to the service's request address as a ``tell`` and resends it until the service
acknowledges it, so an agent killed (SIGKILL included) and restarted loses none and counts
none twice. ``close()`` (or ``flush()``) waits, bounded, for the last acknowledgements.
For high-rate data where a kill may lose what is in flight, PUSH is the explicit option:
``ScalarReducer(..., address=<the service's measurement address>)`` (fire-and-forget, about
10x cheaper, ``agent.reducers.MeasurementPusher``). Both take CURVE keys (``server_key=``,
``client_key=``) for a service with ``service.curve``. Or ``sink=``: any callable taking a
Measurement.

Separate process, fed by bluesky's zmq Proxy (msgpack, never pickle):
``python -m agent.reducers --config configs/agent.yaml --proxy tcp://127.0.0.1:5578``
(see ``agent.reducer_process``; acknowledged too unless ``--push``).

Each event of the reduced stream gives one Measurement: ``run_uid`` = start uid,
``seq`` = event seq_num - 1, positions from the motor readback fields mapped to coordinate
names. Missing or bad data (NaN, I0 <= 0, empty ROI) gives a Measurement with ``failure`` set:
data, not a crash. An event without finite positions cannot be placed and is dropped (logged).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from event_model import DocumentRouter

from agent import curve
from agent.delivery import MeasurementSender
from agent.messages import Measurement

logger = logging.getLogger(__name__)


class ReductionFailure(Exception):
    """Raised inside ``reduce`` when an event's data cannot be reduced (the reason is the text)."""


class MeasurementPusher:
    """A ZeroMQ PUSH socket to the service's measurement (PULL) address: fire-and-forget.

    Sends never block the RunEngine: messages queue up to ``high_water_mark`` while the service
    is away, beyond that they are dropped with an error log and counted in ``n_dropped``.
    What is in flight when the service is killed is lost (``agent.delivery.MeasurementSender``
    is the acknowledged alternative). ``server_key``/``client_key``: CURVE key files.
    """

    def __init__(self, address: str, encoding: str = "msgpack", high_water_mark: int = 100_000,
                 *, server_key: str | Path | None = None, client_key: str | Path | None = None):
        if encoding not in ("msgpack", "json"):
            raise ValueError(f"encoding={encoding!r}: choose 'msgpack' or 'json'")
        if (server_key is None) != (client_key is None):
            raise ValueError(f"server_key={server_key!r}, client_key={client_key!r}: CURVE "
                             "needs both (server.key and client.key_secret)")
        self.address, self.encoding, self.n_dropped = address, encoding, 0
        self._ctx = zmq.Context()
        self._socket = self._ctx.socket(zmq.PUSH)
        if server_key is not None:
            curve.secure_client(self._socket, curve.load_public(server_key),
                                curve.load_pair(client_key))
        self._socket.setsockopt(zmq.SNDHWM, high_water_mark)
        self._socket.setsockopt(zmq.LINGER, 2000)  # let queued measurements go out on close
        self._socket.connect(address)

    def __call__(self, measurement: Measurement) -> None:
        payload = measurement.to_msgpack() if self.encoding == "msgpack" else measurement.to_json()
        try:
            self._socket.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            self.n_dropped += 1
            logger.error("measurement %s/%d dropped: queue to %s full",
                         measurement.run_uid, measurement.seq, self.address)

    def close(self) -> None:
        self._socket.close()
        self._ctx.term()


class Reducer(DocumentRouter):
    """Base reducer: subclasses implement ``reduce(data) -> (values, variances | None)``.

    ``positions``: coordinate name -> event data key of its readback, e.g. {"x": "sample_x"}.
    Where measurements go, exactly one of:

    - ``request_address``: the service's request address (the one ``AgentClient`` uses):
      acknowledged delivery, exactly once across agent restarts (the default to use);
      ``resend_s``: resend interval of an unacknowledged measurement;
    - ``address``: the service's measurement (PULL) address: PUSH, fire-and-forget, for
      high-rate data (``encoding`` msgpack or json); a kill loses what is in flight;
    - ``sink``: any callable taking a Measurement (tests, chaining, a shared
      ``MeasurementSender``).

    ``server_key``/``client_key``: CURVE key files (``beamagent keys``) for either socket.
    ``stream``: the event stream reduced ("primary"). The reducer owns the socket it builds:
    ``close()`` it (acknowledged: waits up to ``timeout_s`` for the last acknowledgements).
    """

    def __init__(self, positions: Mapping[str, str], *, request_address: str | None = None,
                 address: str | None = None, sink: Callable[[Measurement], Any] | None = None,
                 stream: str = "primary", encoding: str = "msgpack", resend_s: float = 1.0,
                 server_key: str | Path | None = None, client_key: str | Path | None = None):
        super().__init__()
        if not positions:
            raise ValueError("positions is empty: map at least one coordinate to a data key")
        given = [k for k, v in (("request_address", request_address), ("address", address),
                                ("sink", sink)) if v]
        if len(given) != 1:
            raise ValueError(f"give exactly one of request_address= (the service's request "
                             f"address: acknowledged), address= (its measurement address: "
                             f"PUSH) or sink=; got {given or 'none'}")
        if sink is not None and (server_key or client_key):
            raise ValueError("server_key/client_key are for request_address= or address=, "
                             "not sink=")
        self.positions = dict(positions)
        self.stream = stream
        keys = dict(server_key=server_key, client_key=client_key)
        self._owned: MeasurementSender | MeasurementPusher | None = None
        if request_address:
            self._owned = MeasurementSender(request_address, resend_s=resend_s, **keys)
        elif address:
            self._owned = MeasurementPusher(address, encoding, **keys)
        self._sink = sink or self._owned
        self._closed = False
        self._run_uid: str | None = None
        self._descriptors: set[str] = set()
        self.n_sent = self.n_failed = self.n_unplaced = 0

    def start(self, doc):
        self._run_uid, self._descriptors = doc["uid"], set()
        return doc

    def descriptor(self, doc):
        if doc.get("name", "primary") == self.stream:
            self._descriptors.add(doc["uid"])
        return doc

    def event(self, doc):
        if self._run_uid is None or doc["descriptor"] not in self._descriptors:
            return doc
        measurement = self.to_measurement(doc)
        if measurement is not None:
            self._sink(measurement)
            self.n_sent += 1
            self.n_failed += measurement.failure is not None
        return doc

    def to_measurement(self, event: Mapping[str, Any]) -> Measurement | None:
        """One event -> one Measurement (failure set if the data is bad); None if unplaceable."""
        data = event["data"]
        positions = {}
        for name, key in self.positions.items():
            value = _finite(data.get(key))
            if value is None:
                self.n_unplaced += 1
                logger.error("event %s of run %s dropped: position %s=%s (data key %r) not "
                             "finite", event["seq_num"], self._run_uid, name, data.get(key), key)
                return None
            positions[name] = value
        common = dict(run_uid=self._run_uid, seq=event["seq_num"] - 1, positions=positions,
                      timestamp=event["time"])
        try:
            values, variances = self.reduce(data)
        except ReductionFailure as exc:
            return Measurement(**common, failure=str(exc)[:500])
        return Measurement(**common, values=values, variances=variances)

    def reduce(self, data: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float] | None]:
        raise NotImplementedError

    @property
    def delivery(self) -> MeasurementSender | MeasurementPusher | None:
        """The sender (acknowledged) or pusher (PUSH) this reducer built; None with ``sink=``."""
        return self._owned

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Acknowledged delivery: wait until every measurement is acknowledged (False on
        timeout). PUSH or a sink: nothing to wait for, True."""
        if isinstance(self._owned, MeasurementSender):
            return self._owned.flush(timeout_s)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the socket built here; acknowledged: after waiting up to ``timeout_s`` for the
        last acknowledgements (what is still unacknowledged is logged). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if isinstance(self._owned, MeasurementSender):
            self._owned.close(timeout_s)
        elif self._owned is not None:
            self._owned.close()


class ScalarReducer(Reducer):
    """``value = detector / monitor`` (or the detector alone if ``monitor`` is None).

    Variance from counting statistics (Poisson: var(d) = d, var(m) = m) by first-order
    propagation of errors for a quotient f = d/m:
    var(f) = var(d)/m^2 + d^2 var(m)/m^4 = d/m^2 + d^2/m^3
    (Bevington & Robinson, *Data Reduction and Error Analysis for the Physical Sciences*,
    3rd ed., ch. 3, "Specific error formulas": division).
    """

    def __init__(self, value_name: str = "det_norm", detector: str = "det",
                 monitor: str | None = "i0", *, counting_statistics: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.value_name, self.detector, self.monitor = value_name, detector, monitor
        self.counting_statistics = counting_statistics

    def reduce(self, data):
        d = _required(data, self.detector)
        if self.monitor is None:
            var = {self.value_name: max(d, 0.0)} if self.counting_statistics else None
            return {self.value_name: d}, var
        m = _required(data, self.monitor)
        if m <= 0:
            raise ReductionFailure(f"monitor {self.monitor}={m} <= 0: cannot normalise")
        var = {self.value_name: max(d, 0.0) / m**2 + d**2 / m**3} \
            if self.counting_statistics else None
        return {self.value_name: d / m}, var


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _required(data: Mapping[str, Any], key: str) -> float:
    if key not in data:
        raise ReductionFailure(f"data key {key!r} missing from the event (has {sorted(data)})")
    value = _finite(data[key])
    if value is None:
        raise ReductionFailure(f"{key}={data[key]!r} is not a finite number")
    return value


def image_moments(image: np.ndarray) -> tuple[float, float, float, float, float]:
    """(sum, centroid_x, centroid_y, sigma_x, sigma_y) of a 2-D (rows, cols) image, in pixels.

    x is the column index, y the row index. Raises ReductionFailure if the sum is not > 0.
    """
    total = float(image.sum())
    if not math.isfinite(total) or total <= 0:
        raise ReductionFailure(f"ROI sum={total} is not > 0: no centroid")
    ys, xs = np.indices(image.shape, dtype=float)
    cx, cy = float((xs * image).sum() / total), float((ys * image).sum() / total)
    var_x = float(((xs - cx) ** 2 * image).sum() / total)
    var_y = float(((ys - cy) ** 2 * image).sum() / total)
    if var_x < 0 or var_y < 0:
        raise ReductionFailure(f"negative second moment (var_x={var_x}, var_y={var_y})")
    return total, cx, cy, math.sqrt(var_x), math.sqrt(var_y)


class ImageReducer(Reducer):
    """ROI sum, centroid and sigma (pixels) of a 2-D camera image in the event data.

    ``roi``: (row_start, row_stop, col_start, col_stop); centroids are in full-image pixels.
    Values: ``<prefix>_sum``, ``<prefix>_centroid_x_px``, ``_centroid_y_px``, ``_sigma_x_px``,
    ``_sigma_y_px``. Counting-statistics variances: var(sum) = sum (Poisson) and
    var(centroid_x) = sigma_x^2 / sum (propagation of errors with var(I_i) = I_i:
    d cx / d I_i = (x_i - cx) / S, so var = sum_i (x_i - cx)^2 I_i / S^2).
    """

    def __init__(self, image: str, *, roi: tuple[int, int, int, int] | None = None,
                 value_prefix: str = "roi", counting_statistics: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.image, self.roi, self.prefix = image, roi, value_prefix
        self.counting_statistics = counting_statistics

    def reduce(self, data):
        if self.image not in data:
            raise ReductionFailure(f"data key {self.image!r} missing from the event")
        try:
            image = np.asarray(data[self.image], dtype=float)
        except (TypeError, ValueError):
            raise ReductionFailure(f"{self.image} is not numeric (unfilled?)") from None
        if image.ndim != 2:
            raise ReductionFailure(f"{self.image} has shape {image.shape}, expected 2-D")
        r0, c0 = 0, 0
        if self.roi is not None:
            r0, r1, c0, c1 = self.roi
            image = image[r0:r1, c0:c1]
        total, cx, cy, sx, sy = image_moments(image)
        p = self.prefix
        values = {f"{p}_sum": total, f"{p}_centroid_x_px": cx + c0, f"{p}_centroid_y_px": cy + r0,
                  f"{p}_sigma_x_px": sx, f"{p}_sigma_y_px": sy}
        if not self.counting_statistics:
            return values, None
        return values, {f"{p}_sum": total, f"{p}_centroid_x_px": sx**2 / total,
                        f"{p}_centroid_y_px": sy**2 / total}


if __name__ == "__main__":  # python -m agent.reducers: the separate-process reducer
    import sys

    from agent.reducer_process import main

    sys.exit(main())
