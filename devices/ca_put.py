"""Workaround: make rejected Channel Access puts raise in ophyd-async 0.21.3 + aioca 2.1.

The bug (found by reading the installed sources):

* ``aioca.caput(..., wait=True)`` reports a failed put (IOC rejected the value, or the
  circuit was cut while a put-callback was pending) by raising ``aioca.CANothing``.
  ``CANothing`` is an ``Exception`` whose ``__bool__`` returns ``self.ok``, i.e. **False**
  for every error (aioca/_catools.py, ``class CANothing``).
* ``ophyd_async.core.SignalW.set`` runs the put inside ``stamina.retry_context``
  (ophyd_async/core/_signal.py, ``async for attempt in retry_context(...)``). tenacity
  stores the exception in a ``concurrent.futures.Future`` and, as the exception is not
  retryable, calls ``outcome.result()``. ``Future.result()`` re-raises only
  ``if self._exception:`` -- a truth test -- so the falsy ``CANothing`` is dropped and
  ``set()`` completes as if the put had succeeded.

The fix here is narrow: :class:`CheckedCaSignalBackend` converts ``CANothing`` into a
(truthy) :class:`~devices.errors.PutError` inside the backend, before the retry wrapper
sees it. :func:`raise_put_errors` applies it to the CA signals of one device tree; our
factories call it on every device they build. Nothing is patched globally and nothing
happens at import time.
"""

from __future__ import annotations

from aioca import CANothing
from ophyd_async.core import Device, Signal, walk_devices
from ophyd_async.epics.core._aioca import CaSignalBackend

from devices.errors import PutError


class CheckedCaSignalBackend(CaSignalBackend):
    """``CaSignalBackend`` whose ``put`` raises :class:`PutError` instead of a falsy
    ``CANothing`` (which ``SignalW.set`` would swallow)."""

    async def put(self, value) -> None:
        try:
            await super().put(value)
        except CANothing as exc:
            raise PutError(f"put of {value!r} to {self.write_pv} failed: {exc}") from exc


def raise_put_errors(device: Device) -> Device:
    """Make every plain CA signal in ``device``'s tree use :class:`CheckedCaSignalBackend`.

    Call before ``connect()``. Returns ``device``. Signals with other backends (PVA,
    soft, already checked) are left alone. The backend object is kept (its class is
    narrowed to the subclass, which adds no state), so PV names and options are unchanged.
    """
    for sig in walk_devices(device).values():
        if not isinstance(sig, Signal):
            continue
        connector = sig._connector
        for backend in {id(b): b for b in (connector._init_backend, connector.backend)}.values():
            if type(backend) is CaSignalBackend:
                backend.__class__ = CheckedCaSignalBackend
    return device
