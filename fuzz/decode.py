"""Fuzz target: image bytes -> structure walk and price (service/image_structure.py, decode_cost.py),
decode, orient, to RGB, crop (service/preprocess.py), for 1 and 10 crops."""

from __future__ import annotations

import io

import atheris
import numpy as np

# PIL's format plugins are Python: coverage guides into them too (numpy is left uninstrumented).
with atheris.instrument_imports(include=["PIL", "service"]):
    import PIL.Image
    import PIL.ImageOps

    PIL.Image.init()  # import every format plugin now, inside the instrumented block
    from service import preprocess
    from service.decode_cost import DecodeLimits, DecodeMemory

from fuzz.harness import fuzz, refused_by_the_service

MAX_PIXELS = 4_000_000  # the service's check on the header keeps each decode small
LIMITS = DecodeLimits(1024, 1.0, DecodeMemory(256 * 2**20))  # the service's defaults


def seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    picture = PIL.Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    out = []
    for fmt, mode, options in [("JPEG", "RGB", {}), ("JPEG", "CMYK", {}), ("PNG", "RGB", {}), ("PNG", "P", {}),
                               ("PNG", "I;16", {}), ("WEBP", "RGB", {}), ("GIF", "P", {"save_all": True}),
                               ("TIFF", "RGB", {}), ("BMP", "RGB", {})]:
        buf = io.BytesIO()
        image = picture.convert("L").convert(mode) if mode == "I;16" else picture.convert(mode)
        if fmt == "JPEG":
            exif = PIL.Image.Exif()
            exif[0x0112] = 6  # rotated: exercises ImageOps.exif_transpose
            options = {"exif": exif, "progressive": mode == "RGB"}  # frames and scans for the walk
        image.save(buf, format=fmt, **options)
        out.append(buf.getvalue())
    return out


def test_one(data: bytes) -> None:
    crops = 10 if data[:1] == b"\x00" else 1
    try:
        rows = preprocess.preprocess(data, crops, max_pixels=MAX_PIXELS, limits=LIMITS)
    except Exception as exc:
        if refused_by_the_service(exc):
            return
        raise
    assert rows.dtype == np.uint8 and rows.shape == (crops, 224, 224, 3), rows.shape


if __name__ == "__main__":
    fuzz(test_one, seeds)
