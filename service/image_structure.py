"""A cheap walk over an image file's structure before Pillow parses it: JPEG marker segments and
scans, PNG chunks, GIF extension blocks.

Pillow walks these in Python while holding the GIL (1-4 s for 4 MiB of tiny JPEG segments or 8 MiB of
PNG chunks), and libjpeg decodes every progressive scan over the whole image however small it is. This
walk stops at `max_segments`, so it costs little whatever the file holds, and it reports what pricing
the decode needs (service/decode_cost.py): the JPEG frame, components and scans, PNG interlacing.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from service.errors import ImageTooCostly

_FILL = re.compile(rb"\xff+")  # fill bytes before a JPEG marker
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # in entropy-coded data: not stuffing, not RST
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_PROGRESSIVE = frozenset((0xC2, 0xC6, 0xCA, 0xCE))
_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMAGE_DATA = (b"IDAT", b"fdAT")
LARGE_CHUNK = 4096  # PNG image data in chunks at least this large costs Pillow little per byte


@dataclass(frozen=True)
class Scan:
    components: tuple[int, ...]  # component ids
    band: int  # coefficients per block it codes: Se - Ss + 1


@dataclass
class Structure:
    """What the walk found; empty for formats it does not walk."""

    segments: int = 0
    progressive: bool = False
    sampling: dict[int, tuple[int, int]] = field(default_factory=dict)  # JPEG component id -> (h, v)
    scans: list[Scan] = field(default_factory=list)
    interlaced: bool = False  # PNG Adam7


def walk(data: bytes, max_segments: int) -> Structure:
    """The structure of a JPEG, PNG or GIF; refuses (422) one with more than `max_segments` segments."""
    if data[:2] == b"\xff\xd8":
        walker = _jpeg
    elif data[:8] == PNG_SIGNATURE:
        walker = _png
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        walker = _gif
    else:
        return Structure()
    found = Structure()
    try:
        walker(data, found, max_segments)
    except (struct.error, IndexError):  # truncated: Pillow says what is wrong with it
        pass
    return found


def _count(found: Structure, n: int, limit: int, what: str) -> None:
    found.segments += n
    if found.segments > limit:
        raise ImageTooCostly(
            f"the image has more than {limit} {what}: metadata floods cost seconds to parse and are refused"
        )


def _jpeg(data: bytes, found: Structure, limit: int) -> None:
    i = 2
    while i < len(data):
        fill = _FILL.match(data, i)
        if fill is None:
            return  # not a marker: Pillow reports the broken file
        _count(found, fill.end() - i, limit, "JPEG marker segments or fill bytes")
        marker, i = data[fill.end()], fill.end() + 1
        if marker == 0xD9:  # end of the first image (an MPO's others follow; only this one is decoded)
            return
        if marker in _STANDALONE:
            continue
        (length,) = struct.unpack_from(">H", data, i)
        if marker in _SOF:
            found.progressive = marker in _PROGRESSIVE
            count = data[i + 7]
            # Factors outside 1..4 are the decoder's error to report; here they only must not divide by 0.
            found.sampling = {data[i + 8 + 3 * c]: (max(1, data[i + 9 + 3 * c] >> 4), max(1, data[i + 9 + 3 * c] & 15))
                              for c in range(count)}
        elif marker == 0xDA:
            count = data[i + 2]
            ids = tuple(data[i + 3 + 2 * c] for c in range(count))
            start, end = data[i + 3 + 2 * count], data[i + 4 + 2 * count]
            found.scans.append(Scan(ids, max(1, end - start + 1)))
            following = _NEXT_MARKER.search(data, i + length)
            i = following.start() if following else len(data)
            continue
        i += length


def _png(data: bytes, found: Structure, limit: int) -> None:
    i = len(PNG_SIGNATURE)
    while i + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, i)
        if kind == b"IHDR":
            found.interlaced = data[i + 20] == 1
        if kind not in _IMAGE_DATA or length < LARGE_CHUNK:
            _count(found, 1, limit, "PNG chunks (other than image data chunks of 4 KiB or more)")
        if kind == b"IEND":
            return
        i += 12 + length


def _gif(data: bytes, found: Structure, limit: int) -> None:
    flags = data[10]
    i = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while data[i] == 0x21:  # extensions before the first image: Pillow reads their blocks one by one
        i += 2
        while size := data[i]:
            _count(found, 1, limit, "GIF extension blocks before the first image")
            i += size + 1
        i += 1
