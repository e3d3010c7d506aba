"""Read the rows of a damaged SQLite file page by page (what SQLite's ``.recover`` does).

A session log cut short (a full disk, a copy interrupted) or with a damaged page is refused
by SQLite as a whole ("database disk image is malformed"), although most of its rows are
still on disk. :func:`salvage_table_rows` walks every page of the file (and of its ``-wal``
file, whose pages are newer), decodes the table b-tree leaf cells it finds (following
overflow chains while they stay inside the file) and returns the records by rowid. Nothing
is written.

The format is the documented SQLite file format (https://www.sqlite.org/fileformat2.html):
a 100-byte header (page size at offset 16), b-tree pages (type 13 = table leaf) with a cell
pointer array, records of varint serial types.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

_HEADER = b"SQLite format 3\x00"
_TABLE_LEAF = 0x0D
_WAL_MAGIC = (0x377F0682, 0x377F0683)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(9):
        if pos + i >= len(data):
            raise ValueError("varint beyond the page")
        byte = data[pos + i]
        if i == 8:
            return (value << 8) | byte, pos + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    raise ValueError("bad varint")  # pragma: no cover - the loop returns


def _decode_record(payload: bytes) -> list[Any]:
    header_size, pos = _varint(payload, 0)
    if not 0 < header_size <= len(payload):
        raise ValueError("bad record header")
    types = []
    while pos < header_size:
        serial, pos = _varint(payload, pos)
        types.append(serial)
    values: list[Any] = []
    body = header_size
    for serial in types:
        if serial == 0:
            values.append(None)
            continue
        if serial in (8, 9):
            values.append(serial - 8)
            continue
        if 1 <= serial <= 6:
            width = (0, 1, 2, 3, 4, 6, 8)[serial]
            chunk = payload[body:body + width]
            if len(chunk) != width:
                raise ValueError("record cut short")
            values.append(int.from_bytes(chunk, "big", signed=True))
            body += width
            continue
        if serial == 7:
            chunk = payload[body:body + 8]
            if len(chunk) != 8:
                raise ValueError("record cut short")
            values.append(struct.unpack(">d", chunk)[0])
            body += 8
            continue
        if serial >= 12:
            width = (serial - 12) // 2
            chunk = payload[body:body + width]
            if len(chunk) != width:
                raise ValueError("record cut short")
            values.append(chunk.decode("utf-8") if serial % 2 else bytes(chunk))
            body += width
            continue
        raise ValueError(f"reserved serial type {serial}")
    return values


class _Pages:
    """Pages by number: the main file's, replaced by the newest copy in the WAL."""

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        if len(data) < 100 or not data.startswith(_HEADER):
            raise ValueError("not an SQLite file (header missing)")
        size = int.from_bytes(data[16:18], "big")
        self.page_size = 65536 if size == 1 else size
        if self.page_size < 512 or self.page_size & (self.page_size - 1):
            raise ValueError(f"bad page size {self.page_size}")
        self.usable = self.page_size - data[20]
        self.pages: dict[int, bytes] = {}
        for number in range(1, len(data) // self.page_size + 1):
            start = (number - 1) * self.page_size
            self.pages[number] = data[start:start + self.page_size]
        self._read_wal(Path(f"{path}-wal"))

    def _read_wal(self, wal: Path) -> None:
        if not wal.is_file():
            return
        data = wal.read_bytes()
        if len(data) < 32 or int.from_bytes(data[:4], "big") not in _WAL_MAGIC:
            return
        if int.from_bytes(data[8:12], "big") != self.page_size:
            return
        frame = 24 + self.page_size
        for start in range(32, len(data) - frame + 1, frame):
            number = int.from_bytes(data[start:start + 4], "big")
            if number:
                self.pages[number] = data[start + 24:start + frame]

    def payload(self, page: bytes, pos: int, size: int) -> bytes:
        """A cell's payload of ``size`` bytes starting at ``pos`` (with its overflow)."""
        usable = self.usable
        max_local = usable - 35
        if size <= max_local:
            return page[pos:pos + size]
        min_local = ((usable - 12) * 32 // 255) - 23
        local = min_local + (size - min_local) % (usable - 4)
        if local > max_local:
            local = min_local
        out = bytearray(page[pos:pos + local])
        nxt = int.from_bytes(page[pos + local:pos + local + 4], "big")
        seen = set()
        while len(out) < size:
            over = self.pages.get(nxt)
            if over is None or nxt in seen:
                raise ValueError("overflow chain leaves the file")
            seen.add(nxt)
            out += over[4:min(usable, 4 + size - len(out))]
            nxt = int.from_bytes(over[:4], "big")
        return bytes(out)


def salvage_table_rows(path: str | Path) -> tuple[list[tuple[int, list[Any]]], int]:
    """Every table row still decodable in the file: ``([(rowid, values)], damaged cells)``.

    Rows of every table come back, in page order, possibly more than once (an old copy of
    a page); the caller picks its own by their shape. An ``INTEGER PRIMARY KEY`` column
    reads as None (its value is the rowid).
    """
    pages = _Pages(Path(path))
    rows: list[tuple[int, list[Any]]] = []
    damaged = 0
    for number, page in sorted(pages.pages.items()):
        offset = 100 if number == 1 else 0
        if len(page) < offset + 8 or page[offset] != _TABLE_LEAF:
            continue
        cells = int.from_bytes(page[offset + 3:offset + 5], "big")
        for c in range(cells):
            at = offset + 8 + 2 * c
            pointer = int.from_bytes(page[at:at + 2], "big")
            try:
                size, pos = _varint(page, pointer)
                rowid, pos = _varint(page, pos)
                rows.append((rowid if rowid < 2**63 else rowid - 2**64,
                             _decode_record(pages.payload(page, pos, size))))
            except (ValueError, UnicodeDecodeError, IndexError):
                damaged += 1
    return rows, damaged
