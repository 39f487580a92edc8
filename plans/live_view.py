"""Live view of the agent's map while a ``gp_scan`` runs: posterior mean and uncertainty.

``LiveAgentMap`` is a bluesky callback. Every ``every`` events of the primary stream it asks
the agent service for the run's session posterior on a coarse grid (the ``posterior``
request: at most 100 x 100 points, JSON lists) on a worker thread, so the RunEngine never
waits for it, and redraws at the next document once the answer is in; at the run's stop it
fetches once more (bounded by ``timeout_s``), draws and, with ``save=``, writes the figure.
Measured points are overlaid from the events' motor readbacks. The session is the run's own
(its start uid) or the one it continues (``agent_session`` in the start document).

Matplotlib's backend is the caller's: pass ``fig`` (e.g. ``matplotlib.figure.Figure()``,
which needs no GUI), or the callback makes one with pyplot in the current backend::

    RE(gp_scan(...), LiveAgentMap("tcp://127.0.0.1:5580", every=5))
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from bluesky.callbacks import CallbackBase

from agent.messages import PosteriorGrid

logger = logging.getLogger(__name__)


def fetch_posterior(address: str, uid: str, shape: tuple[int, ...], timeout_s: float,
                    curve_keys: tuple | None = None) -> PosteriorGrid:
    """One ``posterior`` request on a socket of its own (safe from any thread). Raises
    TimeoutError naming the address, RuntimeError with the service's reason."""
    import zmq

    from agent import curve
    from agent.protocol import decode_reply

    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        if curve_keys is not None:
            curve.secure_client(sock, *curve_keys)
        sock.connect(address)
        body = {"type": "posterior", "uid": uid, "shape": list(shape), "request_id": 1}
        sock.send_multipart([b"", json.dumps(body).encode()])
        if not sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no posterior from the agent at {address} within {timeout_s} s")
        reply = decode_reply(sock.recv_multipart()[-1])
    finally:
        sock.close(linger=0)
    if reply["type"] != "posterior":
        raise RuntimeError(f"agent at {address}: {reply.get('error', reply)}")
    return PosteriorGrid.model_validate(reply["grid"])


def _label(name: str, units: str) -> str:
    return f"{name} ({units})" if units else name


class LiveAgentMap(CallbackBase):
    """Posterior mean and std of the run's agent session, redrawn every ``every`` points.

    ``address``: the service's request address. ``shape``: grid points per axis (<= 100).
    ``fig``: a matplotlib Figure to draw in (default: a new pyplot figure; ``axes``: its
    mean and std axes). ``save``: a path
    the figure is written to at the run's stop. ``server_key``/``client_key``: CURVE keys.
    After a run: ``updates`` (posteriors drawn), ``last_grid``, ``last_error``.
    """

    def __init__(self, address: str, *, every: int = 5, shape: tuple[int, ...] = (40, 40),
                 timeout_s: float = 5.0, fig=None, save: str | Path | None = None,
                 server_key: str | Path | None = None, client_key: str | Path | None = None):
        super().__init__()
        if every < 1:
            raise ValueError(f"every={every}: must be >= 1")
        from agent import curve

        self.address, self.every, self.shape, self.timeout_s = address, every, shape, timeout_s
        self._keys = None if server_key is None else (curve.load_public(server_key),
                                                       curve.load_pair(client_key))
        self.fig, self.save = fig, Path(save) if save else None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-agent-map")
        self._pending: Future | None = None
        self.updates, self.last_grid, self.last_error = 0, None, None
        self._uid: str | None = None

    # -- documents ------------------------------------------------------------------------
    def start(self, doc: dict) -> None:
        self._uid = doc.get("agent_session") or doc["uid"]
        self._motors = list(doc.get("motors", []))
        self._primary: str | None = None
        self._points: list[list[float]] = []
        self._n = 0

    def descriptor(self, doc: dict) -> None:
        if doc.get("name") == "primary":
            self._primary = doc["uid"]

    def event(self, doc: dict) -> None:
        self._draw_if_ready()
        if doc["descriptor"] != self._primary:
            return
        data = doc["data"]
        if all(m in data for m in self._motors):
            self._points.append([float(data[m]) for m in self._motors])
        self._n += 1
        if self._n % self.every == 0 and self._pending is None:
            self._pending = self._pool.submit(self._fetch)

    def stop(self, doc: dict) -> None:
        if self._pending is not None:
            self._pending.result()  # bounded by timeout_s
            self._pending = None
        self._show(self._fetch())
        if self.save is not None and self.fig is not None:
            self.save.parent.mkdir(parents=True, exist_ok=True)
            self.fig.savefig(self.save)

    # -- fetching and drawing -------------------------------------------------------------
    def _fetch(self) -> PosteriorGrid | None:
        try:
            return fetch_posterior(self.address, self._uid, self.shape, self.timeout_s,
                                   self._keys)
        except (TimeoutError, RuntimeError, ValueError) as exc:  # e.g. no model yet
            self.last_error = str(exc)
            logger.debug("live agent map: %s", exc)
            return None

    def _draw_if_ready(self) -> None:
        if self._pending is not None and self._pending.done():
            grid, self._pending = self._pending.result(), None
            self._show(grid)

    def _show(self, grid: PosteriorGrid | None) -> None:
        if grid is None:
            return
        if self.fig is None:
            import matplotlib.pyplot as plt

            self.fig = plt.figure(figsize=(10, 4.2))
        self.fig.clear()
        self.axes = axes = self.fig.subplots(1, 2)  # mean, std
        if len(grid.shape) == 2:
            self._draw_2d(grid, axes)
        else:
            self._draw_1d(grid, axes)
        self.fig.suptitle(f"agent session {grid.uid[:8]}: {grid.n_measurements} measurements")
        self.fig.canvas.draw_idle()
        self.last_grid, self.updates = grid, self.updates + 1

    def _draw_2d(self, grid: PosteriorGrid, axes) -> None:
        (x, y), (ux, uy) = grid.axes, grid.units
        extent = (x[0], x[-1], y[0], y[-1])
        for ax, values, title in ((axes[0], grid.mean, f"posterior mean of {grid.value}"),
                                  (axes[1], grid.std, "posterior std")):
            image = np.asarray(values).reshape(grid.shape).T  # rows: the second coordinate
            shown = ax.imshow(image, origin="lower", extent=extent, aspect="auto")
            self.fig.colorbar(shown, ax=ax)
            if self._points:
                pts = np.asarray(self._points)
                ax.plot(pts[:, 0], pts[:, 1], ".", color="white", markersize=3)
            ax.set(title=title, xlabel=_label(grid.coordinates[0], ux),
                   ylabel=_label(grid.coordinates[1], uy))

    def _draw_1d(self, grid: PosteriorGrid, axes) -> None:
        x, mean, std = np.asarray(grid.axes[0]), np.asarray(grid.mean), np.asarray(grid.std)
        axes[0].plot(x, mean)
        axes[0].fill_between(x, mean - std, mean + std, alpha=0.3)
        axes[1].plot(x, std)
        for ax, title in ((axes[0], f"posterior mean of {grid.value}"),
                          (axes[1], "posterior std")):
            ax.set(title=title, xlabel=_label(grid.coordinates[0], grid.units[0]))

    def close(self) -> None:
        """Stop the worker thread (a fetch in progress ends within ``timeout_s``)."""
        self._pool.shutdown(wait=True)
