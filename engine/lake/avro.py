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
from collections.abc import Callable, Iterator, Mapping
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
        if pos < len(data) and data[pos] < 0x80:  # most are one byte
            self.pos = pos + 1
            return (data[pos] >> 1) ^ -(data[pos] & 1)
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


def _skip_long(buf: _Buffer) -> None:
    data, pos = buf.data, buf.pos
    if data[pos] < 0x80:  # most are one byte; an IndexError past the end is read_container's AvroError
        buf.pos = pos + 1
        return
    end = min(len(data), pos + 10)
    while pos < end and data[pos] & 0x80:
        pos += 1
    if pos >= end:
        raise AvroError("truncated or overlong Avro integer")
    buf.pos = pos + 1


def _skip_bytes(buf: _Buffer) -> None:
    buf.take(buf.long())


def _skipping(size: int) -> Decoder:
    def skip(buf: _Buffer) -> None:
        buf.take(size)

    return skip


_SKIP_PRIMITIVES: dict[str, Decoder] = {
    "null": _null,
    "boolean": _skipping(1),
    "int": _skip_long,
    "long": _skip_long,
    "float": _skipping(4),
    "double": _skipping(8),
    "bytes": _skip_bytes,
    "string": _skip_bytes,
}


def _named(schema: str, primitives: dict[str, Decoder], names: dict[str, Decoder]) -> Decoder:
    """The function for a primitive type, or for a named type defined earlier in the schema."""
    found = primitives.get(schema) or names.get(schema)
    if found is None:
        raise AvroError(f"unknown Avro type {schema!r}")
    return found


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


Fields = Mapping[str, "Fields | None"]
"""Which fields of a record to decode: a field named with None is decoded whole, one named with Fields (a
record) in part; the others are skipped, and the record's dict holds only the fields named."""


def decoder(
    schema: Any,
    names: dict[str, Decoder] | None = None,
    fields: Fields | None = None,
    skipped: dict[str, Decoder] | None = None,
) -> Decoder:
    """A function that reads one value of `schema` (parsed JSON) from a buffer: all of it, or with `fields` the
    named fields of a record (of every record branch of a union, of the items of an array). `names` and
    `skipped` hold the named types defined so far, read and skipped (a type defined in a skipped field
    and named again in a read one, or the other way round, is an unknown type)."""
    names = {} if names is None else names
    skipped = {} if skipped is None else skipped
    if isinstance(schema, str):
        return _named(schema, _PRIMITIVES, names)
    if isinstance(schema, list):
        branches = [decoder(s, names, fields, skipped) for s in schema]

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
        read_fields: list[tuple[str, Decoder]] = []
        skip_fields: list[tuple[str | None, Decoder]] = []

        def record(buf: _Buffer) -> dict[str, Any]:
            return {name: read(buf) for name, read in read_fields}

        def part(buf: _Buffer) -> dict[str, Any]:
            found = {}
            for name, read in skip_fields:
                if name is None:
                    read(buf)
                else:
                    found[name] = read(buf)
            return found

        if fields is None:
            names[str(schema.get("name"))] = record  # a record may refer to itself by name
            read_fields.extend((str(f["name"]), decoder(f["type"], names)) for f in schema["fields"])
            return record
        for field in schema["fields"]:
            name = str(field["name"])
            if name in fields:
                skip_fields.append((name, decoder(field["type"], names, fields[name], skipped)))
            else:
                skip_fields.append((None, _skipper(field["type"], skipped)))
        return part
    if kind == "array":
        item = decoder(schema["items"], names, fields, skipped)

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
        return decoder(kind, names, fields, skipped)  # {"type": "long", "logicalType": ...} and the like
    raise AvroError(f"bad Avro schema {schema!r}")


def _skipper(schema: Any, names: dict[str, Decoder]) -> Decoder:
    """A function that moves a buffer past one value of `schema` without building it (what `decoder` gives for
    the fields it was not asked for)."""
    if isinstance(schema, str):
        return _named(schema, _SKIP_PRIMITIVES, names)
    if isinstance(schema, list):
        branches = [_skipper(s, names) for s in schema]

        def union(buf: _Buffer) -> None:
            index = buf.long()
            if not 0 <= index < len(branches):
                raise AvroError(f"union branch {index} out of range")
            branches[index](buf)

        return union
    if not isinstance(schema, dict):
        raise AvroError(f"bad Avro schema {schema!r}")
    kind = schema.get("type")
    if kind == "record":
        steps: list[Decoder] = []

        def record(buf: _Buffer) -> None:
            for step in steps:
                step(buf)

        names[str(schema.get("name"))] = record
        steps.extend(_skipper(f["type"], names) for f in schema["fields"])
        return record
    if kind in ("array", "map"):
        item = _skipper(schema["items"], names) if kind == "array" else _skipper(schema["values"], names)
        key = _skip_bytes if kind == "map" else None

        def repeated(buf: _Buffer) -> None:
            while True:
                count = buf.long()
                if count == 0:
                    return
                if count < 0:  # the block's size follows: skip it whole
                    buf.take(buf.long())
                    continue
                for _ in range(count):
                    if key is not None:
                        key(buf)
                    item(buf)

        return repeated
    if kind == "enum":
        names[str(schema.get("name"))] = _skip_long
        return _skip_long
    if kind == "fixed":
        size = int(schema["size"])

        def fixed(buf: _Buffer) -> None:
            buf.take(size)

        names[str(schema.get("name"))] = fixed
        return fixed
    if isinstance(kind, str | list | dict):
        return _skipper(kind, names)
    raise AvroError(f"bad Avro schema {schema!r}")


def read_container(data: bytes, fields: Fields | None = None) -> tuple[dict[str, bytes], list[Any]]:
    """The header metadata and every record of an Avro object container file's bytes (with `fields`, only
    those fields of each record: see Fields).

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
    read = _cached_decoder(metadata.get("avro.schema"), fields)
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
        try:
            records.extend(read(inner) for _ in range(count))
        except IndexError:
            raise AvroError("truncated Avro block") from None
        if inner.pos != len(block):
            raise AvroError("an Avro block holds more bytes than its records")
        if buf.take(SYNC_SIZE) != sync:
            raise AvroError("Avro sync marker mismatch")
    return metadata, records


_decoders: dict[tuple[bytes, str], Decoder] = {}
"""Decoders by writer's schema and fields: the manifests of a table share one schema."""


def _cached_decoder(schema: bytes | None, fields: Fields | None) -> Decoder:
    if schema is None:
        raise AvroError("no avro.schema in the header")
    key = (schema, json.dumps(fields, sort_keys=True))
    found = _decoders.get(key)
    if found is None:
        try:
            found = decoder(json.loads(schema), fields=fields)
        except (KeyError, ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
            raise AvroError(f"bad Avro schema in the header: {type(e).__name__}: {e}") from None
        _decoders[key] = found
    return found
