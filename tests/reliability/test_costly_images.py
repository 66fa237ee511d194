"""Images that were cheap to send and expensive to serve (docs/reliability.md, "Cost"; aspect ratios
and failed decodes are tests/reliability/test_request_cost.py): the multipart image count, plain image
fields, and phone photos (MPO) against the real server. Memory is the kernel's high-water mark (VmHWM)
of `python -m service`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, peak_rss, service_process
from tests.reliability import costly
from tests.reliability.conftest import assert_json_error

MB = 2**20
JPEG = {"content-type": "image/jpeg"}


@pytest.fixture(scope="module")
def child(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    log = tmp_path_factory.mktemp("costly") / "service.log"
    with service_process(tiny_repo, "--instances", "1", "--preprocess-threads", "2", log=log) as (url, proc):
        with httpx.Client(base_url=url, timeout=60) as client:  # warm: first-request allocations
            assert client.post("/v1/classify", content=costly.mpo(640, 480), headers=JPEG).status_code == 200
        yield url, proc.pid


def test_a_phone_photo_mpo_decodes_through_the_jpeg_draft(child: tuple[str, int]) -> None:
    url, pid = child
    photo = costly.mpo(7000, 7000)  # 49 Mpixel: 147 MB as full RGB, 2.3 MB at the 1/8 draft
    before = peak_rss(pid)
    response = httpx.post(f"{url}/v1/classify", content=photo, headers=JPEG, timeout=60)
    assert response.status_code == 200, response.text
    grown = peak_rss(pid) - before
    assert grown < 64 * MB, f"peak RSS grew {grown / MB:.0f} MB for one MPO"


def test_plain_image_fields_count_toward_the_image_limit(server: LiveServer) -> None:
    image = costly.mpo(64, 48)
    limit = server.settings.max_images_per_request
    files = [("image", (f"{i}.jpg", image, "image/jpeg")) for i in range(limit)]
    with server.client() as client:  # as many plain fields again: they were decoded too
        response = client.post("/v1/classify", files=files, data={"image": ["x"] * limit})
    assert_json_error(response, 400, "bad_request")
    assert "file part" in response.json()["error"]


def test_a_plain_image_field_gets_a_clear_400_not_a_corrupted_decode(server: LiveServer) -> None:
    # curl -F 'image=<photo.jpg' sends the bytes as a plain field, which the parser turns into text.
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"\r\n\r\n'.encode()
            + costly.mpo(64, 48) + f"\r\n--{boundary}--\r\n".encode())
    with server.client() as client:
        response = client.post("/v1/classify", content=body,
                               headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert_json_error(response, 400, "bad_request")
    assert "image=@" in response.json()["error"]
