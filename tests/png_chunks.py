"""Read and rebuild PNG chunks, to tamper with signed files the way an attacker would
(a Pillow re-save would drop the C2PA chunk instead)."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, out = len(SIGNATURE), []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def rebuild(parts: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray(SIGNATURE)
    for kind, body in parts:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return bytes(out)
