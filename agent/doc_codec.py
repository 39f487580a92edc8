"""A safe msgpack serializer for bluesky documents on the zmq Proxy (never pickle).

bluesky's ``Publisher``/``RemoteDispatcher`` default to pickle, which runs code from anyone who
reaches the port. ``msgpack_numpy`` is no fix: its decoder calls ``pickle.loads`` for arrays
of dtype object. This codec carries numeric/bool arrays only, as msgpack ExtType 42 holding
``[dtype.str, shape, raw bytes]``; numpy scalars become Python numbers. Anything else
(object arrays, arbitrary classes) is refused at encode time.

Use: ``Publisher(addr, serializer=dumps)`` and ``RemoteDispatcher(addr, deserializer=loads)``.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from agent.errors import MessageError

_NDARRAY_EXT = 42
_SAFE_KINDS = frozenset("biuf")  # bool, signed, unsigned, float
MAX_ARRAY_BYTES = 64 << 20


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _SAFE_KINDS:
            raise TypeError(f"array of dtype {obj.dtype} not sendable (numeric dtypes only)")
        arr = np.ascontiguousarray(obj)
        header = msgpack.packb([arr.dtype.str, list(arr.shape)])
        return msgpack.ExtType(_NDARRAY_EXT, header + arr.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__} in a document")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != _NDARRAY_EXT:
        raise MessageError(f"document: msgpack ext type={code} not allowed")
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    dtype_str, shape = unpacker.unpack()
    dtype = np.dtype(dtype_str)
    if dtype.kind not in _SAFE_KINDS or dtype.fields is not None:
        raise MessageError(f"document: array dtype={dtype_str!r} not allowed (numeric only)")
    raw = data[unpacker.tell():]
    if len(raw) > MAX_ARRAY_BYTES:
        raise MessageError(f"document: array of {len(raw)} bytes exceeds {MAX_ARRAY_BYTES}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def dumps(doc: dict) -> bytes:
    """Serialize one bluesky document. Raises TypeError for unsendable content."""
    return msgpack.packb(doc, default=_default, use_bin_type=True)


def loads(payload: bytes) -> dict:
    """Deserialize one document. Raises MessageError (or a msgpack error) on bad input."""
    doc = msgpack.unpackb(payload, raw=False, ext_hook=_ext_hook, strict_map_key=False)
    if not isinstance(doc, dict):
        raise MessageError(f"document: expected a map, got {type(doc).__name__}")
    return doc
