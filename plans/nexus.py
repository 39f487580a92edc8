"""NeXus/HDF5 files of bluesky runs, written live from the document stream or from a file.

``NexusWriter`` is a bluesky callback (start, descriptor, event, event_page, stop): each run
becomes a NeXus file as it is measured, flushed after every event. ``export_documents``
writes the runs of a document list (e.g. ``plans.warm_start.read_jsonl``) into one file.
One NXentry per run::

    entry:NXentry                 @default="data"
      title, start_time, end_time, duration, entry_identifier (run uid), program_name
      instrument:NXinstrument
        <motor>:NXpositioner      value (readback), target_value (setpoint), units; others
        <detector>:NXdetector     data (a one-field detector) or one field per data key
      sample:NXsample             name (the start document's ``sample``)
      data:NXdata                 the measured points (links to the instrument's fields)
      agent:NXprocess             program, version, date
        configuration:NXnote      the agent configuration (start document, JSON)
        proposals:NXdata          the ``proposals`` stream: id, coordinates, acquisition
                                  function and value, phase, hyperparameters, ...
      bluesky:NXcollection        plan_name, uid, exit_status, reason, the start and stop
                                  documents (JSON), streams: any other stream

Scattered points (gp_scan's are not on a grid) follow NXdata's rules as the NeXus validator
of ``nexusformat`` checks them: the signal is 1-D, ``@axes`` has one name per signal
dimension (the first motor), and every motor's 1-D field is an axis along that dimension by
its ``@<motor>_indices = 0`` (an alternative axis in NXdata's terms). Readers that plot
scattered data take all fields with ``_indices`` as the point's coordinates.

Units come from the descriptors' data keys; where a motor or a proposal coordinate has none,
from the agent configuration's coordinates (gp_scan pairs them in order and checks they agree).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np
from event_model import unpack_event_page

from plans.errors import PlanError

logger = logging.getLogger(__name__)

PROPOSALS = "proposals"
PROPOSAL_PREFIX = "proposal_"


class ExportError(ValueError, PlanError):
    """Documents that cannot become a NeXus file (no start document, no events, ...)."""


def iso_time(epoch_s: float) -> str:
    """ISO 8601 with the local UTC offset, as NX_DATE_TIME wants."""
    return datetime.fromtimestamp(epoch_s).astimezone().isoformat()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def nx_group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.require_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def write_field(group: h5py.Group, name: str, value, units: str | None = None) -> None:
    if name in group:
        del group[name]
    group[name] = value
    if units:
        group[name].attrs["units"] = units


class Column:
    """One data key of a stream as an extendable dataset: one row per event."""

    def __init__(self, group: h5py.Group, name: str, data_key: dict, units: str | None):
        shape = [0 if s is None else s for s in data_key.get("shape", [])]
        dtype, fill = _dtype(data_key)
        self.dataset = group.create_dataset(
            name, shape=(0, *shape), maxshape=(None, *[None] * len(shape)), dtype=dtype,
            fillvalue=fill, chunks=True)
        if units:
            self.dataset.attrs["units"] = units

    def append(self, row: int, value) -> None:
        """Write ``value`` at ``row`` (rows not written keep the fill value)."""
        data = self.dataset
        value = None if value is None else np.asarray(value)
        shape = list(data.shape)
        shape[0] = max(shape[0], row + 1)
        if value is not None and value.ndim:
            shape[1:] = [max(a, b) for a, b in zip(shape[1:], value.shape, strict=True)]
        if tuple(shape) != data.shape:
            data.resize(tuple(shape))
        if value is not None:
            data[(row, *[slice(0, n) for n in value.shape])] = value


def _dtype(data_key: dict):
    kind = data_key.get("dtype", "number")
    if kind == "string":
        return h5py.string_dtype(), ""
    if kind == "integer":
        return np.int64, 0
    if kind == "boolean":
        return np.bool_, False
    numpy = np.dtype(data_key.get("dtype_numpy", "<f8"))
    if numpy.kind in "iu":
        return numpy, 0
    return (np.float64, np.nan) if numpy.kind in "fb" else (h5py.string_dtype(), "")


class StreamWriter:
    """The columns of one stream (one or more descriptors with the same name)."""

    def __init__(self):
        self.columns: dict[str, Column] = {}
        self.rows = 0

    def add(self, key: str, column: Column) -> None:
        self.columns.setdefault(key, column)

    def append(self, data: dict) -> None:
        for key, column in self.columns.items():
            column.append(self.rows, _plain(data.get(key)))
        self.rows += 1


def _plain(value):
    """A value as HDF5 takes it (strings of any dict or odd object as JSON)."""
    if isinstance(value, dict):
        return json.dumps(value)
    return value


class RunWriter:
    """Writes one run into ``entry`` of an open HDF5 file, document by document."""

    def __init__(self, entry: h5py.Group, signal: str | None = None):
        self.entry = entry
        self.signal = signal
        self.streams: dict[str, StreamWriter] = {}
        self.by_descriptor: dict[str, StreamWriter] = {}
        self.start_doc: dict = {}

    # -- start
    def start(self, doc: dict) -> None:
        self.start_doc = doc
        entry = self.entry
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        plan = doc.get("plan_name", "unknown")
        write_field(entry, "title", str(doc.get("title") or f"{plan} {doc['uid']}"))
        write_field(entry, "start_time", iso_time(doc["time"]))
        write_field(entry, "entry_identifier", doc["uid"])
        write_field(entry, "program_name", "bluesky")
        entry["program_name"].attrs["version"] = doc.get("versions", {}).get("bluesky", "")
        nx_group(entry, "instrument", "NXinstrument")
        self._sample(doc)
        self._agent(doc)
        bluesky = nx_group(entry, "bluesky", "NXcollection")
        write_field(bluesky, "plan_name", plan)
        write_field(bluesky, "uid", doc["uid"])
        write_field(bluesky, "exit_status", "running")
        write_field(bluesky, "start", json.dumps(doc, default=str))

    def _sample(self, doc: dict) -> None:
        sample = nx_group(self.entry, "sample", "NXsample")
        info = doc.get("sample", (doc.get("demo") or {}).get("sample"))
        if isinstance(info, dict):
            for key, value in info.items():
                write_field(sample, str(key), value if isinstance(value, int | float)
                            else str(value))
        elif info is not None:
            write_field(sample, "name", str(info))

    def _agent(self, doc: dict) -> None:
        if "agent_config" not in doc:
            return
        agent = nx_group(self.entry, "agent", "NXprocess")
        write_field(agent, "program", "beamagent")
        write_field(agent, "version", _version("beamagent"))
        write_field(agent, "date", iso_time(doc["time"]))
        note = nx_group(agent, "configuration", "NXnote")
        write_field(note, "type", "application/json")
        write_field(note, "description", "the agent configuration (start document "
                    "'agent_config'): coordinates, value, model, acquisition, stop")
        write_field(note, "data", json.dumps(doc["agent_config"]))

    # -- descriptor
    def descriptor(self, doc: dict) -> None:
        name = doc.get("name", "primary")
        stream = self.streams.get(name)
        if stream is None:
            stream = self.streams[name] = StreamWriter()
        self.by_descriptor[doc["uid"]] = stream
        layout = {"primary": self._primary, PROPOSALS: self._proposals}.get(name, self._other)
        layout(doc, stream)

    def _owners(self, doc: dict) -> dict[str, str]:
        """data key -> the device (object) it belongs to."""
        owners = {k: v.get("object_name", k) for k, v in doc["data_keys"].items()}
        for device, keys in doc.get("object_keys", {}).items():
            owners.update({k: device for k in keys})
        return owners

    def _coordinate_units(self) -> list[str]:
        coordinates = (self.start_doc.get("agent_config") or {}).get("coordinates", [])
        return [c.get("units") or "" for c in coordinates]

    def _primary(self, doc: dict, stream: StreamWriter) -> None:
        instrument = self.entry["instrument"]
        motors = list(self.start_doc.get("motors", []))
        detectors = list(self.start_doc.get("detectors", []))
        fallback = dict(zip(motors, self._coordinate_units(), strict=False))
        readbacks = {}
        for key, device in self._owners(doc).items():
            data_key = doc["data_keys"][key]
            if device in motors:
                group = nx_group(instrument, device, "NXpositioner")
                field = _positioner_field(doc, device, key)
                units = data_key.get("units") or fallback.get(device)
                if field == "value":
                    readbacks[device] = key
                    write_field(group, "name", device)
            else:
                group = nx_group(instrument, device, "NXdetector" if device in detectors
                                 else "NXcollection")
                alone = key == device and len(doc.get("object_keys", {}).get(device, [])) < 2
                field, units = ("data" if alone else key), data_key.get("units")
            if key not in stream.columns:
                stream.add(key, Column(group, field, data_key, units))
        self._data_group(doc, stream, [readbacks[m] for m in motors if m in readbacks],
                         detectors)

    def _data_group(self, doc: dict, stream: StreamWriter, axes: list[str],
                    detectors: list[str]) -> None:
        data = nx_group(self.entry, "data", "NXdata")
        owners = self._owners(doc)
        signals = [k for k in _hinted(doc, detectors) + list(doc["data_keys"])
                   if owners.get(k) in detectors and _scalar_number(doc["data_keys"][k])]
        signals = list(dict.fromkeys(signals))
        if self.signal is not None:
            if self.signal not in doc["data_keys"]:
                raise ExportError(f"--signal {self.signal!r}: no such field in the primary "
                                  f"stream; fields: {sorted(doc['data_keys'])}")
            signals = [self.signal, *(s for s in signals if s != self.signal)]
        for key in [*signals, *axes]:
            if key not in data:
                dataset = stream.columns[key].dataset
                dataset.attrs["target"] = dataset.name  # NeXus: where a link points
                data[key] = dataset  # hard link to the instrument's field
        _nxdata_attributes(data, signals, axes)

    def _proposals(self, doc: dict, stream: StreamWriter) -> None:
        if "agent" not in self.entry:
            nx_group(self.entry, "agent", "NXprocess")
        group = nx_group(self.entry["agent"], "proposals", "NXdata")
        coordinates = (self.start_doc.get("agent_config") or {}).get("coordinates", [])
        units = {c["name"]: c.get("units") for c in coordinates}
        for key, data_key in doc["data_keys"].items():
            field = key.removeprefix(PROPOSAL_PREFIX)
            if key not in stream.columns:
                stream.add(key, Column(group, field, data_key,
                                       data_key.get("units") or units.get(field)))
        axes = [c["name"] for c in coordinates if c["name"] in group]
        signal = ["acquisition_value"] if "acquisition_value" in group else []
        _nxdata_attributes(group, signal, axes)

    def _other(self, doc: dict, stream: StreamWriter) -> None:
        streams = nx_group(self.entry["bluesky"], "streams", "NXcollection")
        group = nx_group(streams, doc.get("name", "unnamed"), "NXcollection")
        for key, data_key in doc["data_keys"].items():
            if key not in stream.columns:
                stream.add(key, Column(group, key, data_key, data_key.get("units")))

    # -- events
    def event(self, doc: dict) -> None:
        stream = self.by_descriptor.get(doc["descriptor"])
        if stream is None:
            raise ExportError(f"event {doc.get('uid')} names descriptor {doc['descriptor']}, "
                              "which no descriptor document before it declared")
        stream.append(doc["data"])

    # -- stop
    def stop(self, doc: dict) -> None:
        entry = self.entry
        write_field(entry, "end_time", iso_time(doc["time"]))
        write_field(entry, "duration", round(doc["time"] - self.start_doc["time"]), "s")
        bluesky = entry["bluesky"]
        write_field(bluesky, "exit_status", doc.get("exit_status", "unknown"))
        if doc.get("reason"):
            write_field(bluesky, "reason", doc["reason"])
        write_field(bluesky, "stop", json.dumps(doc, default=str))

    def n_events(self) -> int:
        return sum(s.rows for s in self.streams.values())


SETPOINTS = ("setpoint", "user_setpoint")  # ophyd.sim and ophyd-async; classic EpicsMotor


def _positioner_field(doc: dict, device: str, key: str) -> str:
    """NXpositioner's name for a motor's data key: value, target_value, or the key."""
    if key == _readback(doc, device):
        return "value"
    return "target_value" if key.removeprefix(f"{device}_") in SETPOINTS else key


def _readback(doc: dict, device: str) -> str | None:
    """The motor's readback key: its hinted field, else the key named as the motor."""
    hinted = doc.get("hints", {}).get(device, {}).get("fields", [])
    keys = doc.get("object_keys", {}).get(device, [])
    return next(iter(hinted), device if device in doc["data_keys"] else next(iter(keys), None))


def _hinted(doc: dict, devices: list[str]) -> list[str]:
    hints = doc.get("hints", {})
    return [f for d in devices for f in hints.get(d, {}).get("fields", [])]


def _scalar_number(data_key: dict) -> bool:
    return data_key.get("dtype") in ("number", "integer") and not data_key.get("shape")


def _nxdata_attributes(group: h5py.Group, signals: list[str], axes: list[str]) -> None:
    """Scattered points: 1-D signal, every axis 1-D along the same (only) dimension."""
    if signals:
        group.attrs["signal"] = signals[0]
    if len(signals) > 1:
        group.attrs["auxiliary_signals"] = signals[1:]
    if axes:
        group.attrs["axes"] = axes[:1]  # one name per dimension of the 1-D signal
        for axis in axes:
            group.attrs[f"{axis}_indices"] = 0


class NexusWriter:
    """Bluesky callback writing each run to a NeXus file as it is measured.

    ``NexusWriter("out/")`` writes ``out/<uid8>.nxs`` per run (as ``JSONLinesWriter`` names
    its files); ``filename=`` names the file of a single run. The file is flushed after
    every event, so a run that dies leaves a readable file with the points measured until
    then (HDF5 locks it while the run goes on). ``signal=``: the primary-stream field to plot
    (default: the first detector field).

    A failure to write (a full disk, a document it cannot store) is logged and ends the
    file, never the run: the scan goes on and ``error`` holds the exception. ``strict=True``
    raises instead (which aborts the run).
    """

    def __init__(self, dirname: str | Path, filename: str | None = None,
                 signal: str | None = None, strict: bool = False):
        self.dirname = Path(dirname)
        self.filename = filename
        self.signal = signal
        self.strict = strict
        self.path: Path | None = None
        self.error: Exception | None = None
        self._file: h5py.File | None = None
        self._run: RunWriter | None = None

    def __call__(self, name: str, doc: dict) -> None:
        if name != "start" and self._run is None:
            return  # not in a run this writer started, or its file failed
        try:
            self._write(name, doc)
        except Exception as exc:
            self.close()
            self.error = exc
            if self.strict:
                raise
            logger.exception("NeXus file %s: stopped writing at a %s document", self.path,
                             name)

    def _write(self, name: str, doc: dict) -> None:
        if name == "start":
            self._open(doc)
        elif name == "descriptor":
            self._run.descriptor(doc)
        elif name in ("event", "event_page"):
            for event in [doc] if name == "event" else unpack_event_page(doc):
                self._run.event(event)
            self._file.flush()
        elif name == "stop":
            self._run.stop(doc)
            self.close()

    def _open(self, doc: dict) -> None:
        self.close()
        self.error = None
        self.path = self.dirname / (self.filename or f"{doc['uid'].split('-')[0]}.nxs")
        self._file = new_file(self.path)
        self._run = RunWriter(self._file.create_group("entry"), self.signal)
        self._run.start(doc)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._run = None, None


def new_file(path: Path) -> h5py.File:
    f = h5py.File(path, "w")
    f.attrs.update({"NX_class": "NXroot", "default": "entry", "file_name": str(path),
                    "file_time": iso_time(datetime.now().timestamp()), "creator": "beamagent",
                    "HDF5_Version": h5py.version.hdf5_version, "h5py_version": h5py.__version__})
    return f


def split_runs(documents: Iterable[tuple[str, dict]]) -> list[list[tuple[str, dict]]]:
    """The documents of each run, in order (a run begins at its start document)."""
    runs: list[list[tuple[str, dict]]] = []
    for name, doc in documents:
        if name == "start":
            runs.append([])
        if runs:
            runs[-1].append((name, doc))
    return runs


def export_documents(documents: Iterable[tuple[str, dict]], path: str | Path,
                     signal: str | None = None, source: str = "documents") -> list[str]:
    """Write every run in ``documents`` to the NeXus file ``path``; returns the entry names.

    Raises ExportError (naming ``source``) for documents without a start document or a run
    without events, before anything is written.
    """
    runs = split_runs(documents)
    if not runs:
        raise ExportError(f"{source}: no start document (not a bluesky run's documents?)")
    for run in runs:
        if not any(name in ("event", "event_page") for name, _ in run):
            raise ExportError(f"{source}: run {run[0][1]['uid']} has no events "
                              "(nothing was measured)")
    names = ["entry" if i == 0 else f"entry_{i + 1}" for i in range(len(runs))]
    try:
        with new_file(Path(path)) as f:
            for entry_name, run in zip(names, runs, strict=True):
                writer = RunWriter(f.create_group(entry_name), signal)
                replay(writer, run)
                if not any(name == "stop" for name, _ in run):  # the run died unfinished
                    write_field(writer.entry["bluesky"], "exit_status",
                                "unknown (no stop document)")
    except ExportError:
        Path(path).unlink(missing_ok=True)  # no half-written file left behind
        raise
    return names


def replay(writer: RunWriter, run: list[tuple[str, dict]]) -> None:
    for name, doc in run:
        if name == "event_page":
            for event in unpack_event_page(doc):
                writer.event(event)
        elif name in ("start", "descriptor", "event", "stop"):
            getattr(writer, name)(doc)
