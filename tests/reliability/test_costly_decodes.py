"""Images whose decode costs far more than their bytes, on the real server (service/decode_cost.py):
refused by their header before Pillow walks them, or priced and served; never a model evaluation for
a refused one."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer, serve
from tests.reliability import costly
from tests.reliability.conftest import assert_json_error, evaluated_rows

JPEG, PNG = {"content-type": "image/jpeg"}, {"content-type": "image/png"}


@pytest.fixture(scope="module")
def live(tiny_repo) -> LiveServer:
    with serve(tiny_repo, max_decode_ms=300) as server:
        yield server


@pytest.mark.parametrize(("build", "headers", "says"), [
    (lambda: costly.progressive_scans(300, 1600), JPEG, "s of CPU"),
    (lambda: costly.jpeg_marker_flood(64 * 1024), JPEG, "JPEG marker segments"),
    (lambda: costly.exif_flood(256 * 1024), JPEG, "JPEG marker segments"),
    (lambda: costly.png_chunk_flood(64 * 1024), PNG, "PNG chunks"),
], ids=["progressive-scans", "com-flood", "exif-flood", "png-chunk-flood"])
def test_a_costly_image_is_refused_by_its_header_with_a_422_that_says_why(live, build, headers, says) -> None:
    before = evaluated_rows(live.url)
    with live.client() as client:
        response = client.post("/v1/classify", content=build(), headers=headers)
    assert_json_error(response, 422, "image_too_costly")
    assert says in response.json()["error"]
    assert evaluated_rows(live.url) == before


def test_a_16_bit_png_is_priced_and_served(live) -> None:
    with live.client() as client:
        response = client.post("/v1/classify", content=costly.png_16bit(1200), headers=PNG)
    assert response.status_code == 200, response.text


def test_a_refused_decode_leaves_the_server_serving(live) -> None:
    with live.client() as client:
        client.post("/v1/classify", content=costly.progressive_scans(300, 1600), headers=JPEG)
        ordinary = client.post("/v1/classify", content=costly.mpo(320, 240), headers=JPEG)
    assert ordinary.status_code == 200
