#!/usr/bin/env python3
"""Draws the app and tray icons (a shield with a state dot) as PNGs, standard library only.

Run from the repository root: python3 icons/make_icons.py
"""
import math
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def png(path, size, pixel):
    rows = []
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            row.extend(pixel(x + 0.5, y + 0.5, size))
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(data)


def shield_cover(x, y, s):
    """Coverage (0..1) of a shield shape, 4x4 supersampled."""
    hits = 0
    for sy in range(4):
        for sx in range(4):
            u = (x - 0.5 + (sx + 0.5) / 4) / s
            v = (y - 0.5 + (sy + 0.5) / 4) / s
            if 0.14 <= u <= 0.86 and 0.08 <= v <= 0.55:
                hits += 1
            elif v > 0.55 and v <= 0.94:
                # lower part narrows to a point
                half = 0.36 * math.cos((v - 0.55) / 0.39 * math.pi / 2)
                if abs(u - 0.5) <= half:
                    hits += 1
    return hits / 16


def dot_cover(x, y, s, cx, cy, r):
    hits = 0
    for sy in range(4):
        for sx in range(4):
            u = (x - 0.5 + (sx + 0.5) / 4) / s
            v = (y - 0.5 + (sy + 0.5) / 4) / s
            if (u - cx) ** 2 + (v - cy) ** 2 <= r * r:
                hits += 1
    return hits / 16


def icon(fill, dot=None):
    def pixel(x, y, s):
        a = shield_cover(x, y, s)
        r, g, b = fill
        if dot is not None:
            d = dot_cover(x, y, s, 0.5, 0.48, 0.17)
            if d > 0:
                r = int(r * (1 - d) + dot[0] * d)
                g = int(g * (1 - d) + dot[1] * d)
                b = int(b * (1 - d) + dot[2] * d)
        return bytes([r, g, b, int(255 * a)])
    return pixel


BRAND = (52, 86, 140)
# Every size a desktop asks for (the .deb installs each into /usr/share/icons/hicolor/NxN/apps).
for name, size in [("16x16.png", 16), ("24x24.png", 24), ("32x32.png", 32), ("48x48.png", 48),
                   ("64x64.png", 64), ("128x128.png", 128), ("256x256.png", 256), ("icon.png", 512)]:
    png(HERE / name, size, icon(BRAND, (240, 244, 250)))
for state, dot in [("stopped", (150, 150, 150)), ("starting", (235, 170, 40)), ("ready", (70, 190, 100)),
                   ("generating", (80, 160, 255)), ("breach", (230, 60, 50))]:
    png(HERE / f"tray-{state}.png", 32, icon(BRAND, dot))


def ico(path, sizes, pixel):
    """A Windows .ico whose images are PNGs (read by Windows Vista and later, and by tauri-build
    for the executable's resource)."""
    images = []
    for size in sizes:
        tmp = path.with_suffix(f".{size}.tmp")
        png(tmp, size, pixel)
        images.append((size, tmp.read_bytes()))
        tmp.unlink()
    out = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    for size, data in images:
        dim = 0 if size >= 256 else size  # 0 means 256
        out += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
    path.write_bytes(out + b"".join(d for _, d in images))


ico(HERE / "icon.ico", [16, 24, 32, 48, 64, 256], icon(BRAND, (240, 244, 250)))
print("icons written to", HERE)
