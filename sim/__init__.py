"""The simulated beamline: caproto Channel Access IOCs with hidden sample physics.

Serve it with ``beamagent sim`` (or ``python -m sim``); nothing at runtime imports ``sim``
except that command and the tests.

PVs (prefix ``beamline.prefix``, default ``BL:``; see ``python -m sim --list``):

- one motor record per ``beamline.motors[]``: ``{prefix}{pv}`` (= ``.VAL``) and fields
  ``.VAL .DVAL .RBV .DRBV .OFF .DIR .FOFF .SET .VELO .VMAX .ACCL .EGU .PREC .DESC .MOVN .DMOV
  .HLS .LLS .HLM .LLM .DHLM .DLLM .TDIR .STOP .HOMF .HOMR .MRES .ERES .SREV .UREV .RDBD .RTRY
  .RCNT .MISS .OUT`` (:mod:`sim.motor_record`);
- scaler record ``{prefix}{scaler.pv}`` with ``.CNT .CONT .TP .TP1 .T .FREQ .DLY .DLY1 .RATE
  .RAT1 .EGU .S1-.S32 .NM1-.NM32 .PR1-.PR32 .G1-.G32`` and ``{record}:NACQ``
  (:mod:`sim.scaler_record`);
- ``RING:CURRENT`` (mA), ``RING:DUMP``, ``RING:REFILL`` (:mod:`sim.ring`);
- ``SHUTTER`` (CLOSED/OPEN command), ``SHUTTER:STATUS`` (readback, lags ``delay_s``).

State across restarts (off by default): ``simulation.autosave: {path: ..., period_s: 1.0}``
or ``--autosave PATH`` saves motor positions and settings and the scaler's TP, and restores
them at start, as EPICS autosave does (:mod:`sim.autosave`).

Ground truth for tests and benchmarks (never served): ``sim.samples.make_sample(name, seed)``
and ``sim.samples.truth_grid``; the counting model is :mod:`sim.physics`.
"""
