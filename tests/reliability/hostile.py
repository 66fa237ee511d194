"""Malformed, hostile and merely unusual image files, built in memory (docs/reliability.md, "Bad input")."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests.conftest import make_image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def pixels(width: int = 160, height: int = 120, seed: int = 0) -> Image.Image:
    """An RGB picture whose values stay below 250 (the poisoned tiny model fails on 255)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 250, (height, width, 3), dtype=np.uint8))


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side x side pixels (400 Mpixel when side is 20000) in about 50 KB."""
    row = b"\0" + b"\0" * ((side + 7) // 8)  # filter byte + packed bits
    idat = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def gif_screen_bomb(side: int = 20_000) -> bytes:
    """A 1x1 GIF whose logical screen (what PIL reports as its size) is side x side."""
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", side, side)
    return bytes(data)


def png_bad_crc() -> bytes:
    data = bytearray(encode(pixels(), "PNG"))
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


def jpeg_without_huffman_tables() -> bytes:
    """A JPEG whose DHT segments are cut out: the scan cannot be decoded."""
    data, out, i = encode(pixels(), "JPEG", quality=90), bytearray(b"\xff\xd8"), 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            out += data[i:]
            break
        if marker != 0xC4:
            out += data[i : i + 2 + length]
        i += 2 + length
    return bytes(out)


def jpeg_zero_width() -> bytes:
    data = bytearray(encode(pixels(), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 7 : sof + 9] = b"\0\0"  # SOF0: length(2) precision(1) height(2) width(2)
    return bytes(data)


def tiff_bad_ifd_offset() -> bytes:
    data = bytearray(encode(pixels(), "TIFF"))
    data[4:8] = struct.pack("<I", 0x7FFFFFF0)  # the first IFD points far past the end
    return bytes(data)


def webp_bad_chunk_size() -> bytes:
    data = bytearray(encode(pixels(), "WEBP", quality=80))
    data[16:20] = struct.pack("<I", 0x7FFFFFF0)  # the VP8 chunk claims 2 GB
    return bytes(data)


def gif_garbage_lzw() -> bytes:
    data = bytearray(encode(pixels().convert("P"), "GIF"))
    start = data.find(b"\x2c")  # image descriptor; LZW data follows it
    data[start + 12 : start + 200] = b"\xff" * 188
    return bytes(data)


def cmyk_jpeg() -> bytes:
    return encode(pixels().convert("CMYK"), "JPEG", quality=95)


def png_16bit() -> bytes:
    rng = np.random.default_rng(1)
    return encode(Image.fromarray(rng.integers(0, 60000, (120, 160), dtype=np.uint16)), "PNG")


def exif_rotated(fmt: str = "PNG", orientation: int = 6) -> tuple[bytes, bytes]:
    """(the file with an EXIF orientation tag, the same picture stored upright without one)."""
    image = pixels(200, 120, seed=3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    upright = image.transpose(Image.Transpose.ROTATE_270) if orientation == 6 else image
    return encode(image, fmt, exif=exif), encode(upright, fmt)


def animated(fmt: str) -> tuple[bytes, bytes]:
    """(a two-frame animation, its first frame alone as a lossless PNG)."""
    frames = [pixels(seed=4), pixels(seed=5)]
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
    first = Image.open(io.BytesIO(data))
    first.seek(0)
    return data, encode(first.convert("RGB"), "PNG")


def palette_png_with_transparency() -> bytes:
    return encode(pixels().convert("P"), "PNG", transparency=0)


def greyscale_alpha_png() -> bytes:
    return encode(pixels().convert("LA"), "PNG")


def tiny_image(fmt: str = "PNG") -> bytes:
    return encode(pixels(1, 1), fmt)


__all__ = ["make_image"]
