"""Hostile inputs: each cheap-to-send, expensive-to-serve request of issue 12, a fixed number of times,
against a `python -m service` started here on 127.0.0.1. Per attack it prints: requests, statuses,
server CPU per request, peak RSS growth (the kernel's high-water mark, VmHWM, reset before each
attack), the worst /healthz probe latency while it ran, and the latency of an ordinary request after.

    python scripts/hostile.py --repository model_repository [--count 5] [--json runs/hostile.json]

`--service-root` runs the server from another checkout of the project, to compare before and after.
Not CI (a benchmark; method and numbers in docs/reliability.md, "Cost"). Needs httpx and psutil.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20
JPEG, PNG, JSON = ({"content-type": f"{t}"} for t in ("image/jpeg", "image/png", "application/json"))
Attack = Callable[[str, int], list[int]]  # (url, count) -> the statuses it got


def _smooth(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([x * 200 // width, y * 200 // height, (x + y) * 100 // (width + height)],
                                    axis=-1).astype(np.uint8))


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _posts(url: str, count: int, path: str, **kwargs: object) -> list[int]:
    with httpx.Client(base_url=url, timeout=120) as client:
        return [client.post(path, **kwargs).status_code for _ in range(count)]


def _raw(url: str, head: bytes, pieces: Iterator[bytes], wait_s: float) -> int:
    """Send by hand; the status the server answered within `wait_s` of the last piece, else 0."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        try:
            sock.sendall(head)
            for piece in pieces:
                sock.sendall(piece)
        except OSError:  # the server answered and closed while we were still sending
            pass
        try:
            answer = sock.recv(64)
        except OSError:  # silent for `wait_s`: the body is still held
            answer = b""
    return int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/") else 0


def strip(width: int, height: int, crops: int) -> Attack:
    data = _encode(Image.new("RGB", (width, height), (90, 120, 60)), "PNG")
    return lambda url, n: _posts(url, n, "/v1/classify", content=data, headers=PNG, params={"crops": crops})


def garbage_then_photos(url: str, count: int) -> list[int]:
    photo = _encode(_smooth(1600, 1600), "PNG", compress_level=1)
    files = [("image", ("0.png", b"garbage", "image/png"))] + [("image", (f"{i}.png", photo, "image/png"))
                                                                 for i in range(1, 16)]
    return _posts(url, count, "/v1/classify", files=files)


def v2_json(model: str, body: bytes) -> Attack:
    return lambda url, n: _posts(url, n, f"/v2/models/{model}/infer", content=body, headers=JSON)


def _values(count: int, datatype: str, item: str) -> bytes:
    data = ",".join([item] * count)
    return (f'{{"inputs":[{{"name":"image","datatype":"{datatype}","shape":[1,{count}],'
            f'"data":[{data}]}}]}}').encode()


def stalled_uploads(concurrent: int, size: int) -> Attack:
    head = (f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    piece = b"\0" * MB

    def upload() -> Iterator[bytes]:  # all but the last byte, which never comes
        yield from [piece] * (size // MB - 1)
        yield piece[:-1]

    def attack(url: str, count: int) -> list[int]:
        with ThreadPoolExecutor(concurrent) as pool:  # each waits 3 s for an answer, then gives up
            return list(pool.map(lambda _: _raw(url, head, upload(), 3.0), range(concurrent * count)))
    return attack


def plain_fields(url: str, count: int) -> list[int]:
    photo = _encode(_smooth(640, 480), "JPEG")
    files = [("image", (f"{i}.jpg", photo, "image/jpeg")) for i in range(16)]
    return _posts(url, count, "/v1/classify", files=files, data={"image": [photo.decode("latin-1")] * 16})


def dribbled_past_deadline(url: str, count: int) -> list[int]:
    photo = base64.b64encode(_encode(_smooth(320, 240), "JPEG")).decode()
    body = json.dumps({"parameters": {"timeout": 300_000},
                       "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [photo]}]}).encode()
    model = httpx.get(f"{url}/v1/models", timeout=30).json()["name"]
    head = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()

    def pieces() -> Iterator[bytes]:
        yield body[:50]
        time.sleep(0.6)  # past the request's 300 ms before the rest arrives
        yield body[50:]
    return [_raw(url, head, pieces(), 30.0) for _ in range(count)]


def mpo_photo(url: str, count: int) -> list[int]:
    rng = np.random.default_rng(0)  # photo-like noise: a smooth picture decodes unrealistically fast
    pixels = np.asarray(_smooth(4000, 3000), dtype=np.int16) + rng.integers(0, 40, (3000, 4000, 3), dtype=np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
        out, format="MPO", save_all=True, append_images=[_smooth(160, 120)], quality=85)
    return _posts(url, count, "/v1/classify", content=out.getvalue(), headers=JPEG)


def attacks(name: str) -> dict[str, Attack]:
    """Every attack, by the served repository's name (the v2 ensemble model)."""
    return {
        "1. 1x300 PNG strip, crops=144": strip(1, 300, 144),
        "1. 3000x1 PNG strip, crops=144": strip(3000, 1, 144),
        "2. garbage + 15 photos (multipart)": garbage_then_photos,
        "4. v2 JSON, 1M empty BYTES (4 MB)": v2_json(name, _values(1_000_000, "BYTES", '""')),
        "4. v2 JSON, 2M UINT8 values (4 MB)": v2_json(f"{name}-tensor", _values(2_000_000, "UINT8", "0")),
        "4. v2 JSON, 10M UINT8 values (20 MB)": v2_json(f"{name}-tensor", _values(10_000_000, "UINT8", "0")),
        "5. 40 concurrent stalled 20 MiB uploads": stalled_uploads(40, 20 * MB),
        "6. 16 files + 16 plain image fields": plain_fields,
        "8. v2 upload dribbled past its 300 ms": dribbled_past_deadline,
        "10. 12-Mpixel MPO phone photo": mpo_photo,
    }


@contextmanager
def probing(url: str) -> Iterator[list[float]]:
    """/healthz every 10 ms while the block runs; yields the latencies (seconds) as they come."""
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    client.get(f"{url}/healthz")
                except httpx.HTTPError:  # a probe that timed out counts as its whole wait
                    pass
                latencies.append(time.perf_counter() - started)
                stop.wait(0.01)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield latencies
    finally:
        stop.set()
        thread.join(60)


def _memory(pid: int, key: str) -> int:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def run(url: str, proc: psutil.Process, name: str, attack: Attack, count: int) -> dict:
    ordinary = _encode(_smooth(500, 375), "JPEG")
    Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # the high-water mark starts again here
    rss, cpu = _memory(proc.pid, "VmRSS"), sum(proc.cpu_times()[:2])
    with probing(url) as probes:
        statuses = attack(url, count)
    cpu_s = sum(proc.cpu_times()[:2]) - cpu
    started = time.perf_counter()
    after = httpx.post(f"{url}/v1/classify", content=ordinary, headers=JPEG, timeout=120)
    return {
        "attack": name, "requests": len(statuses), "statuses": dict(sorted(Counter(statuses).items())),
        "cpu_s_per_request": cpu_s / max(1, len(statuses)),
        "peak_rss_growth_mb": (_memory(proc.pid, "VmHWM") - rss) / MB,
        "worst_probe_ms": 1000 * max(probes, default=0.0),
        "ordinary_after_ms": 1000 * (time.perf_counter() - started), "ordinary_status": after.status_code,
    }


@contextmanager
def service(repository: Path, root: Path) -> Iterator[tuple[str, psutil.Process]]:
    """A fresh `python -m service` per attack: no attack's heap is another's starting point."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "--model-repository", str(repository.resolve()), "--port", str(port),
         "--providers", "cpu", "--log-level", "error", "--grpc-port", "0"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while not _ready(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        httpx.post(f"{url}/v1/classify", content=_encode(_smooth(500, 375), "JPEG"), headers=JPEG, timeout=120)
        yield url, psutil.Process(server.pid)
    finally:
        server.terminate()
        server.wait(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--count", type=int, default=5, help="Requests per attack (x40 for the uploads).")
    parser.add_argument("--service-root", type=Path, default=ROOT, help="Checkout whose `python -m service` runs.")
    parser.add_argument("--json", type=Path, help="Also write the rows here.")
    args = parser.parse_args(argv)
    rows = []
    for name in attacks("").keys():
        with service(args.repository, args.service_root) as (url, proc):
            attack = attacks(httpx.get(f"{url}/v1/models", timeout=30).json()["name"])[name]
            rows.append(run(url, proc, name, attack, args.count))
    print(f"{'attack':42} {'requests':>8}  {'statuses':28} {'CPU/req s':>9} {'peak RSS +MB':>12} "
          f"{'worst probe ms':>14} {'next request ms':>15}")
    for r in rows:
        print(f"{r['attack']:42} {r['requests']:>8}  {json.dumps(r['statuses']):28} {r['cpu_s_per_request']:>9.2f} "
              f"{r['peak_rss_growth_mb']:>12.0f} {r['worst_probe_ms']:>14.0f} {r['ordinary_after_ms']:>15.0f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
