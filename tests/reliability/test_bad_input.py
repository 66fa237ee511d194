"""Bad input against the real server: every malformed or hostile request gets its 4xx as JSON, costs
no model evaluation, and leaves the server healthy; unusual but valid images get a correct 200.
The table of cases and answers is docs/reliability.md, "Bad input"."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, make_image, serve
from tests.reliability import hostile
from tests.reliability.conftest import assert_json_error, evaluated_rows, metric, raw_exchange, status_and_json

LIMIT = 1_000_000  # max_body_bytes of the server under test
JPEG, PNG = {"content-type": "image/jpeg"}, {"content-type": "image/png"}
V2 = "Inference-Header-Content-Length"
Send = Callable[[httpx.Client], httpx.Response]


@pytest.fixture(scope="module")
def strict(tiny_repo: Path) -> Iterator[LiveServer]:
    with serve(tiny_repo, max_body_bytes=LIMIT, max_images_per_request=4, instances=1) as live:
        yield live


@pytest.fixture(scope="module", autouse=True)
def server_errors_before(strict: LiveServer) -> float:
    """5xx answers so far in this process (the metrics registry is per process, shared by servers)."""
    return sum(metric(strict.url, "googlenet_requests_total", status=s) for s in ("500", "502", "503", "504"))


@pytest.fixture(scope="module")
def client(strict: LiveServer) -> Iterator[httpx.Client]:
    with strict.client() as client:
        yield client


def raw(data: bytes | Callable[[], bytes], headers: dict[str, str] = JPEG, **params: object) -> Send:
    return lambda c: c.post("/v1/classify", content=data() if callable(data) else data, headers=headers, params=params)


def parts(*fields: tuple[str, bytes]) -> Send:
    return lambda c: c.post("/v1/classify", files=[(name, (f"{i}.img", d, "image/jpeg")) for i, (name, d) in enumerate(fields)])


def v2(model: str, body: bytes | Callable[[], bytes], headers: dict[str, str] | None = None) -> Send:
    return lambda c: c.post(f"/v2/models/{model}/infer", content=body() if callable(body) else body, headers=headers or {})


def v2_json(model: str, doc: object) -> Send:
    return v2(model, json.dumps(doc).encode(), {"content-type": "application/json"})


def encoded_input(data: str, shape: list[int] | None = None, datatype: str = "BYTES") -> dict:
    return {"inputs": [{"name": "image", "datatype": datatype, "shape": shape or [1, 1], "data": [data]}]}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _nested(depth: int) -> bytes:
    return b'{"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1], "data": ' + b"[" * depth + b"]" * depth + b"}]}"


def _binary_doc(size: int) -> bytes:
    doc = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 1], "parameters": {"binary_data_size": size}}]}
    return json.dumps(doc).encode()


# (id, expected status, expected code, how to send it): every one is refused before any model runs.
REJECTED: list[tuple[str, int, str, Send]] = [
    # empty, truncated and corrupt files of every format
    ("empty body", 400, "bad_request", raw(b"")),
    ("truncated JPEG", 422, "invalid_image", raw(lambda: hostile.truncated(make_image()))),
    ("JPEG cut after 20 bytes", 422, "invalid_image", raw(lambda: make_image()[:20])),
    ("JPEG with zero width", 422, "invalid_image", raw(hostile.jpeg_zero_width)),
    ("JPEG magic then garbage", 422, "invalid_image", raw(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)),
    ("truncated PNG", 422, "invalid_image", raw(lambda: hostile.truncated(make_image(fmt="PNG")), PNG)),
    ("PNG with a bad CRC", 422, "invalid_image", raw(hostile.png_bad_crc, PNG)),
    ("truncated WebP", 422, "invalid_image", raw(lambda: hostile.truncated(make_image(fmt="WEBP")))),
    ("WebP chunk claiming 2 GB", 422, "invalid_image", raw(hostile.webp_bad_chunk_size)),
    ("truncated GIF", 422, "invalid_image", raw(lambda: hostile.truncated(make_image(fmt="GIF")))),
    ("GIF with garbage LZW data", 422, "invalid_image", raw(hostile.gif_garbage_lzw)),
    ("truncated TIFF", 422, "invalid_image", raw(lambda: hostile.truncated(make_image(fmt="TIFF")))),
    ("TIFF with its IFD past the end", 422, "invalid_image", raw(hostile.tiff_bad_ifd_offset)),
    ("truncated BMP", 422, "invalid_image", raw(lambda: hostile.truncated(make_image(fmt="BMP")))),
    # text and other formats labelled as images
    ("text labelled image/jpeg", 422, "invalid_image", raw(b"this is text, labelled as a JPEG")),
    ("HTML labelled image/png", 422, "invalid_image", raw(b"<html><script>alert(1)</script></html>", PNG)),
    ("SVG (not a raster format)", 422, "invalid_image",
     raw(b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', {"content-type": "image/svg+xml"})),
    ("ICO (a format left out)", 422, "invalid_image", raw(lambda: hostile.encode(hostile.pixels(32, 32), "ICO"))),
    ("PDF labelled octet-stream", 422, "invalid_image",
     raw(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", {"content-type": "application/octet-stream"})),
    # small files that decode to huge images
    ("PNG of 20000x20000 pixels in 50 KB", 422, "image_too_large", raw(hostile.png_bomb, PNG)),
    ("GIF claiming a 20000x20000 screen", 422, "image_too_large", raw(hostile.gif_screen_bomb)),
    # media types and sizes
    ("text/plain body", 415, "unsupported_media_type", raw(b"hello", {"content-type": "text/plain"})),
    ("application/json body", 415, "unsupported_media_type", raw(b"{}", {"content-type": "application/json"})),
    ("raw body over the limit", 413, "too_large", raw(lambda: b"\xff\xd8" + bytes(LIMIT))),
    # multipart
    ("zero-length multipart part", 422, "invalid_image", parts(("image", b""))),
    ("multipart part over the limit", 413, "too_large", parts(("image", bytes(LIMIT + 10)))),
    ("more parts than allowed", 400, "bad_request", parts(*[("image", make_image(32, 32))] * 5)),
    ("multipart without an image field", 400, "bad_request", parts(("photo", make_image()))),
    ("one good and one bad part", 422, "invalid_image", parts(("image", make_image()), ("image", b"nope"))),
    ("multipart without a boundary", 400, "bad_request", raw(b"--x\r\n", {"content-type": "multipart/form-data"})),
    ("multipart garbage", 400, "bad_request",
     raw(b"garbage" * 50, {"content-type": "multipart/form-data; boundary=abc"})),
    ("multipart part header of 100 KB", 400, "bad_request", raw(
        b'--abc\r\nContent-Disposition: form-data; name="image"; filename="' + b"a" * 100_000 + b'"\r\n\r\nx\r\n--abc--\r\n',
        {"content-type": "multipart/form-data; boundary=abc"})),
    # bad query values
    ("crops=7", 400, "bad_request", raw(make_image, crops=7)),
    ("crops=abc", 400, "bad_request", raw(make_image, crops="abc")),
    ("crops=1e3", 400, "bad_request", raw(make_image, crops="1e3")),
    ("crops with a NUL byte", 400, "bad_request", raw(make_image, crops="1\x00")),
    ("topk=0", 400, "bad_request", raw(make_image, topk=0)),
    ("topk=1001", 400, "bad_request", raw(make_image, topk=1001)),
    ("topk with 400 digits", 400, "bad_request", raw(make_image, topk="9" * 400)),
    ("models=0", 400, "bad_request", raw(make_image, models=0)),
    ("models=99", 400, "bad_request", raw(make_image, models=99)),
    ("ensemble=perhaps", 400, "bad_request", raw(make_image, ensemble="perhaps")),
    ("deadline_ms=-1", 400, "bad_request", raw(make_image, deadline_ms=-1)),
    ("deadline_ms=nan", 400, "bad_request", raw(make_image, deadline_ms="nan")),
    # bad v2 protocol bodies
    ("v2 body not JSON", 400, "bad_request", v2("tiny", b"{nope", {"content-type": "application/json"})),
    ("v2 JSON array", 400, "bad_request", v2_json("tiny", [1, 2])),
    ("v2 without inputs", 400, "bad_request", v2_json("tiny", {"outputs": []})),
    ("v2 wrong datatype", 400, "bad_request", v2_json("tiny", encoded_input("x", datatype="FP32"))),
    ("v2 shape and data disagree", 400, "bad_request", v2_json("tiny", encoded_input("eA==", shape=[3, 1]))),
    ("v2 bad base64", 400, "bad_request", v2_json("tiny", encoded_input("not base64!"))),
    ("v2 base64 of text", 422, "invalid_image", v2_json("tiny", encoded_input(b64(b"plain text")))),
    ("v2 batch of 0", 400, "bad_request", v2_json("tiny", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [0, 1], "data": []}]})),
    ("v2 batch over the limit", 400, "bad_request", v2_json("tiny", {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [9, 1], "data": [b64(make_image(32, 32))] * 9}]})),
    ("v2 header length past the body", 400, "bad_request", v2("tiny", b"{}", {V2: "999"})),
    ("v2 binary size past the body", 400, "bad_request", v2("tiny", lambda: _binary_doc(10_000) + b"\0" * 10, {V2: str(len(_binary_doc(10_000)))})),
    ("v2 array nested 100000 deep", 400, "bad_request", v2("tiny-tensor", _nested(100_000), {"content-type": "application/json"})),
    ("v2 uint8 value 256", 400, "bad_request", v2_json("tiny-tensor", {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 224, 224, 3], "data": [256] * 150528}]})),
    ("v2 tensor of the wrong shape", 400, "bad_request", v2_json("tiny-tensor", {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": [0] * 12}]})),
    ("v2 gzip bomb", 413, "too_large", v2("tiny", lambda: gzip.compress(bytes(50 * LIMIT)), {"content-encoding": "gzip"})),
    ("v2 unknown Content-Encoding", 415, "unsupported_media_type", v2("tiny", b"{}", {"content-encoding": "br"})),
    ("v2 raw body not an image", 422, "invalid_image", v2("tiny", b"not an image", {V2: "0"})),
    # model names and paths with tricks
    ("v2 unknown model", 404, "not_found", v2_json("resnet", encoded_input("eA=="))),
    ("v2 model ../../etc/passwd", 404, "not_found", lambda c: c.get("/v2/models/..%2F..%2Fetc%2Fpasswd")),
    ("v2 model '..'", 404, "not_found", lambda c: c.get("/v2/models/%2e%2e/config")),
    ("v2 member/../member", 404, "not_found", lambda c: c.post("/v2/models/tiny-0%2F..%2Ftiny-1/infer", content=b"{}")),
    ("v2 version ../1", 404, "not_found", lambda c: c.get("/v2/models/tiny-0/versions/..%2F1/config")),
    ("v2 model NUL", 404, "not_found", lambda c: c.get("/v2/models/tiny%00/ready")),
    ("static ../service/app.py", 404, "not_found", lambda c: c.get("/static/..%2Fservice%2Fapp.py")),
    ("static '..'", 404, "not_found", lambda c: c.get("/static/%2e%2e")),
]


@pytest.mark.parametrize(("status", "code", "send"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_bad_input_is_a_json_4xx_that_costs_no_evaluation(
    strict: LiveServer, client: httpx.Client, tiny_repo: Path, status: int, code: str, send: Send
) -> None:
    before = evaluated_rows(strict.url)
    response = send(client)
    assert_json_error(response, status, code, private=tiny_repo)
    assert evaluated_rows(strict.url) == before  # refused before any model ran
    assert client.get("/readyz").status_code == 200


def test_there_are_at_least_thirty_hostile_cases() -> None:
    assert len(REJECTED) >= 30 and len({c[0] for c in REJECTED}) == len(REJECTED)


def _top(response: httpx.Response) -> list[tuple[int, float]]:
    assert response.status_code == 200, response.text[:300]
    return [(p["index"], p["probability"]) for p in response.json()["predictions"]]


# Unusual but valid images: each gets a 200 whose answer equals that of the plain picture it shows.
@pytest.mark.parametrize(
    "case", ["EXIF-rotated PNG", "animated GIF", "animated WebP"],
)
def test_valid_unusual_images_answer_as_the_picture_they_show(client: httpx.Client, case: str) -> None:
    unusual, plain = {
        "EXIF-rotated PNG": hostile.exif_rotated,
        "animated GIF": lambda: hostile.animated("GIF"),
        "animated WebP": lambda: hostile.animated("WEBP"),
    }[case]()
    assert _top(raw(unusual)(client)) == _top(raw(plain, PNG)(client))


@pytest.mark.parametrize(
    "build",
    [hostile.cmyk_jpeg, hostile.png_16bit, lambda: hostile.exif_rotated("JPEG")[0], hostile.palette_png_with_transparency,
     hostile.greyscale_alpha_png, hostile.tiny_image, lambda: hostile.tiny_image("JPEG"),
     lambda: make_image(fmt="TIFF"), lambda: make_image(fmt="BMP")],
    ids=["CMYK JPEG", "16-bit PNG", "EXIF-rotated JPEG", "palette PNG with transparency", "greyscale+alpha PNG",
         "1x1 PNG", "1x1 JPEG", "TIFF", "BMP"],
)
def test_valid_unusual_images_are_classified(
    strict: LiveServer, client: httpx.Client, build: Callable[[], bytes]
) -> None:
    before = evaluated_rows(strict.url)
    assert len(_top(raw(build)(client))) == 5
    assert evaluated_rows(strict.url) == before + 1  # one crop, one model: exactly one evaluation


def _chunked_head(length_header: str = "Transfer-Encoding: chunked") -> bytes:
    return (f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n{length_header}\r\n\r\n").encode()


def test_an_endless_slow_body_is_cut_at_the_limit_while_reading(strict: LiveServer) -> None:
    # 1 KB chunks, past the limit, and the body never ends: only a limit enforced while reading answers.
    piece = b"400\r\n" + b"\xff" * 1024 + b"\r\n"
    before = evaluated_rows(strict.url)
    status, body = status_and_json(raw_exchange(strict.url, _chunked_head(), [piece] * (LIMIT // 1024 + 64)))
    assert status == 413 and body["code"] == "too_large"
    assert evaluated_rows(strict.url) == before


def test_a_declared_length_over_the_limit_is_refused_before_any_byte_arrives(strict: LiveServer) -> None:
    status, body = status_and_json(raw_exchange(strict.url, _chunked_head(f"Content-Length: {10 * LIMIT}")))
    assert status == 413 and body["code"] == "too_large"


def test_a_malformed_content_length_is_refused_by_the_http_layer(strict: LiveServer) -> None:
    # h11/httptools answer this before the app runs (plain text, not our JSON): the server stays up.
    answer = raw_exchange(strict.url, _chunked_head("Content-Length: 12abc") + b"x" * 12)
    assert answer.startswith(b"HTTP/1.1 400")
    assert httpx.get(f"{strict.url}/readyz").status_code == 200


def test_request_ids_are_echoed_only_when_safe(client: httpx.Client) -> None:
    assert client.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    for hostile_id in (b"a" * 500, b"<script>", b"a b", "é".encode()):
        echoed = client.get("/healthz", headers={"x-request-id": hostile_id}).headers["x-request-id"]
        assert echoed.encode() != hostile_id and len(echoed) == 32  # a fresh id instead


def test_no_bad_input_made_a_server_error(strict: LiveServer, server_errors_before: float) -> None:
    now = sum(metric(strict.url, "googlenet_requests_total", status=s) for s in ("500", "502", "503", "504"))
    assert now == server_errors_before
