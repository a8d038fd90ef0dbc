"""Avro object container files read with the standard library: the manifest lists and manifests of the lake's
Iceberg tables, for the command line's light reads (engine.lake.manifest_files), which must not import
pyiceberg (a third of a second for its Avro reader alone, with pydantic).

Follows the Avro 1.11 specification (docs/architecture.md, "Reading manifests without pyiceberg"): a header
(magic `Obj\\x01`, a metadata map holding `avro.schema` and `avro.codec`, a 16-byte sync marker), then
blocks of (object count, byte size, objects, sync marker). Every record is decoded with the writer's
schema, the one in the file's header: primitive types, records, enums, arrays, maps, unions and fixed.
Logical types are left as their underlying type (a date stays an int). Codecs `null` and `deflate` only
(what pyiceberg writes); anything else, or a file that does not parse, raises AvroError.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

MAGIC = b"Obj\x01"
SYNC_SIZE = 16


class AvroError(ValueError):
    """The file is not an Avro object container this reader understands."""


class _Buffer:
    """Bytes with a read position."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if size < 0 or end > len(self.data):
            raise AvroError("truncated Avro data")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def long(self) -> int:
        """A zig-zag variable-length integer (Avro's int and long)."""
        data, pos = self.data, self.pos
        shift = result = 0
        while True:
            if pos >= len(data):
                raise AvroError("truncated Avro integer")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise AvroError("Avro integer longer than 64 bits")
        self.pos = pos
        return (result >> 1) ^ -(result & 1)


Decoder = Callable[[_Buffer], Any]


def _bytes(buf: _Buffer) -> bytes:
    return buf.take(buf.long())


def _string(buf: _Buffer) -> str:
    return buf.take(buf.long()).decode("utf-8")


def _boolean(buf: _Buffer) -> bool:
    return buf.take(1) != b"\x00"


def _float(buf: _Buffer) -> float:
    return float(struct.unpack("<f", buf.take(4))[0])


def _double(buf: _Buffer) -> float:
    return float(struct.unpack("<d", buf.take(8))[0])


def _null(buf: _Buffer) -> None:
    return None


_PRIMITIVES: dict[str, Decoder] = {
    "null": _null,
    "boolean": _boolean,
    "int": _Buffer.long,
    "long": _Buffer.long,
    "float": _float,
    "double": _double,
    "bytes": _bytes,
    "string": _string,
}


def _blocks(buf: _Buffer) -> Iterator[int]:
    """The item counts of an array's or map's blocks (a negative count is followed by the block's size)."""
    while True:
        count = buf.long()
        if count == 0:
            return
        if count < 0:
            buf.long()
            count = -count
        yield count


def decoder(schema: Any, names: dict[str, Decoder] | None = None) -> Decoder:
    """A function that reads one value of `schema` (parsed JSON) from a buffer."""
    names = {} if names is None else names
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        if schema in names:
            return names[schema]
        raise AvroError(f"unknown Avro type {schema!r}")
    if isinstance(schema, list):
        branches = [decoder(s, names) for s in schema]

        def union(buf: _Buffer) -> Any:
            index = buf.long()
            if not 0 <= index < len(branches):
                raise AvroError(f"union branch {index} out of range")
            return branches[index](buf)

        return union
    if not isinstance(schema, dict):
        raise AvroError(f"bad Avro schema {schema!r}")
    kind = schema.get("type")
    if kind == "record":
        fields: list[tuple[str, Decoder]] = []

        def record(buf: _Buffer) -> dict[str, Any]:
            return {name: read(buf) for name, read in fields}

        names[str(schema.get("name"))] = record  # a record may refer to itself by name
        fields.extend((str(f["name"]), decoder(f["type"], names)) for f in schema["fields"])
        return record
    if kind == "array":
        item = decoder(schema["items"], names)

        def array(buf: _Buffer) -> list[Any]:
            return [item(buf) for count in _blocks(buf) for _ in range(count)]

        return array
    if kind == "map":
        value = decoder(schema["values"], names)

        def mapping(buf: _Buffer) -> dict[str, Any]:
            return {_string(buf): value(buf) for count in _blocks(buf) for _ in range(count)}

        return mapping
    if kind == "enum":
        symbols = list(schema["symbols"])

        def enum(buf: _Buffer) -> str:
            return str(symbols[buf.long()])

        names[str(schema.get("name"))] = enum
        return enum
    if kind == "fixed":
        size = int(schema["size"])

        def fixed(buf: _Buffer) -> bytes:
            return buf.take(size)

        names[str(schema.get("name"))] = fixed
        return fixed
    if isinstance(kind, str | list | dict):
        return decoder(kind, names)  # {"type": "long", "logicalType": ...} and the like
    raise AvroError(f"bad Avro schema {schema!r}")


def read_container(data: bytes) -> tuple[dict[str, bytes], list[Any]]:
    """The header metadata and every record of an Avro object container file's bytes.

    Raises AvroError for anything else than a well-formed file with codec null or deflate.
    """
    buf = _Buffer(data)
    if buf.take(len(MAGIC)) != MAGIC:
        raise AvroError("not an Avro object container file")
    metadata = {_string(buf): _bytes(buf) for count in _blocks(buf) for _ in range(count)}
    sync = buf.take(SYNC_SIZE)
    codec = metadata.get("avro.codec", b"null").decode()
    if codec not in ("null", "deflate"):
        raise AvroError(f"Avro codec {codec} is not supported")
    try:
        read = decoder(json.loads(metadata["avro.schema"]))
    except (KeyError, json.JSONDecodeError, TypeError) as e:
        raise AvroError(f"bad Avro schema in the header: {e}") from None
    records: list[Any] = []
    while buf.pos < len(data):
        count = buf.long()
        block = buf.take(buf.long())
        if codec == "deflate":
            try:
                block = zlib.decompress(block, -15)
            except zlib.error as e:
                raise AvroError(f"damaged deflate block: {e}") from None
        inner = _Buffer(block)
        records.extend(read(inner) for _ in range(count))
        if inner.pos != len(block):
            raise AvroError("an Avro block holds more bytes than its records")
        if buf.take(SYNC_SIZE) != sync:
            raise AvroError("Avro sync marker mismatch")
    return metadata, records
