"""Hostile inputs: each cheap-to-send, expensive-to-serve request, a fixed number of times, against a
fresh `python -m service` (gRPC on) started here on 127.0.0.1. Per attack it prints: statuses, server
CPU per request, peak RSS growth (the kernel's high-water mark, VmHWM, reset before each attack), the
worst /healthz probe (every 10 ms) and the worst ordinary 1-crop request (every 0.25 s) while it ran,
metric series added, server errors (5xx other than 503/504), and a note.

    python -m scripts.hostile --repository model_repository [--count 3] [--json runs/hostile.json]

The attacks are scripts/hostile_attacks.py (`--first-audit`: the earlier ones, below).

`--service-root` runs the server from another checkout of the project, to compare before and after.
Not CI (a benchmark; method and numbers in docs/reliability.md, "Cost"). Needs httpx, psutil and h2.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import socket
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

from loadtest.servers import ServerProcess
from scripts import hostile_attacks
from scripts.hostile_attacks import Attack, Target

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20
JPEG, PNG, JSON = ({"content-type": f"{t}"} for t in ("image/jpeg", "image/png", "application/json"))


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


def strip(width: int, height: int, crops: int) -> Callable[[str, int], list[int]]:
    data = _encode(Image.new("RGB", (width, height), (90, 120, 60)), "PNG")
    return lambda url, n: _posts(url, n, "/v1/classify", content=data, headers=PNG, params={"crops": crops})


def garbage_then_photos(url: str, count: int) -> list[int]:
    photo = _encode(_smooth(1600, 1600), "PNG", compress_level=1)
    files = [("image", ("0.png", b"garbage", "image/png"))] + [("image", (f"{i}.png", photo, "image/png"))
                                                                 for i in range(1, 16)]
    return _posts(url, count, "/v1/classify", files=files)


def v2_json(suffix: str, body: bytes) -> Attack:
    return lambda t, n: (_posts(t.url, n, f"/v2/models/{t.model}{suffix}/infer", content=body, headers=JSON), "")


def _values(count: int, datatype: str, item: str) -> bytes:
    data = ",".join([item] * count)
    return (f'{{"inputs":[{{"name":"image","datatype":"{datatype}","shape":[1,{count}],'
            f'"data":[{data}]}}]}}').encode()


def stalled_uploads(concurrent: int, size: int) -> Callable[[str, int], list[int]]:
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


def _first(attack: Callable[[str, int], list[int]]) -> Attack:
    return lambda t, count: (attack(t.url, count), "")


def first_audit() -> dict[str, Attack]:
    """The first audit's attacks (docs/reliability.md, "Cost"), as `attack(target, count)`."""
    return {
        "1. 1x300 PNG strip, crops=144": _first(strip(1, 300, 144)),
        "1. 3000x1 PNG strip, crops=144": _first(strip(3000, 1, 144)),
        "2. garbage + 15 photos (multipart)": _first(garbage_then_photos),
        "4. v2 JSON, 1M empty BYTES (4 MB)": v2_json("", _values(1_000_000, "BYTES", '""')),
        "4. v2 JSON, 2M UINT8 values (4 MB)": v2_json("-tensor", _values(2_000_000, "UINT8", "0")),
        "4. v2 JSON, 10M UINT8 values (20 MB)": v2_json("-tensor", _values(10_000_000, "UINT8", "0")),
        "5. 40 concurrent stalled 20 MiB uploads": _first(stalled_uploads(40, 20 * MB)),
        "6. 16 files + 16 plain image fields": _first(plain_fields),
        "8. v2 upload dribbled past its 300 ms": _first(dribbled_past_deadline),
        "10. 12-Mpixel MPO phone photo": _first(mpo_photo),
    }


@contextmanager
def probing(url: str) -> Iterator[tuple[list[float], list[tuple[int, float]]]]:
    """While the block runs: /healthz every 10 ms, and an ordinary 1-crop request every 0.25 s;
    yields (probe latencies, (status, latency) of each ordinary request), seconds."""
    latencies: list[float] = []
    ordinary: list[tuple[int, float]] = []
    stop = threading.Event()
    image = hostile_attacks.ordinary_image()

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

    def request() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    status = client.post(f"{url}/v1/classify", content=image, headers=JPEG).status_code
                except httpx.HTTPError:
                    status = 0
                ordinary.append((status, time.perf_counter() - started))
                stop.wait(0.25)

    threads = [threading.Thread(target=probe, daemon=True), threading.Thread(target=request, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        yield latencies, ordinary
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def _memory(pid: int, key: str) -> int:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def _series(url: str) -> int:
    """Series on /metrics (histograms once, not per bucket): what a label value that input sets would grow."""
    lines = httpx.get(f"{url}/metrics", timeout=30).text.splitlines()
    names = [ln.split("{")[0].split(" ")[0] for ln in lines if ln and not ln.startswith("#")]
    return sum(1 for n in names if not n.endswith(("_bucket", "_sum", "_created")))


def run(target: Target, proc: psutil.Process, name: str, attack: Attack, count: int) -> dict:
    Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # the high-water mark starts again here
    rss, cpu, series = _memory(proc.pid, "VmRSS"), sum(proc.cpu_times()[:2]), _series(target.url)
    with probing(target.url) as (probes, ordinary):
        statuses, note = attack(target, count)
    cpu_s = sum(proc.cpu_times()[:2]) - cpu
    return {
        "attack": name, "requests": len(statuses), "statuses": dict(sorted(Counter(map(str, statuses)).items())),
        "cpu_s_per_request": cpu_s / max(1, len(statuses)),
        "peak_rss_growth_mb": (_memory(proc.pid, "VmHWM") - rss) / MB,
        "worst_probe_ms": 1000 * max(probes, default=0.0),
        "ordinary_worst_ms": 1000 * max((s for _, s in ordinary), default=0.0),
        "ordinary_statuses": dict(sorted(Counter(str(c) for c, _ in ordinary).items())),
        "series_added": _series(target.url) - series,
        "server_errors": sum(1 for s in [*statuses, *(c for c, _ in ordinary)] if isinstance(s, int) and s >= 500
                             and s != 503 and s != 504),
        "note": note,
    }


@contextmanager
def service(repository: Path, root: Path) -> Iterator[tuple[str, str, psutil.Process]]:
    """A fresh `python -m service` per attack (gRPC on): no attack's heap is another's starting point."""
    args = ["--model-repository", str(repository.resolve()), "--providers", "cpu", "--log-level", "error"]
    with ServerProcess("service", args, cwd=root) as server:
        httpx.post(f"{server.url}/v1/classify", content=hostile_attacks.ordinary_image(), headers=JPEG, timeout=120)
        yield server.url, server.grpc_target, psutil.Process(server.pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--count", type=int, default=3, help="Rounds per attack.")
    parser.add_argument("--first-audit", action="store_true", help="Run the first audit's attacks instead.")
    parser.add_argument("--only", default="", help="Comma-separated name prefixes: run only those attacks.")
    parser.add_argument("--service-root", type=Path, default=ROOT, help="Checkout whose `python -m service` runs.")
    parser.add_argument("--json", type=Path, help="Also write the rows here.")
    args = parser.parse_args(argv)
    table = first_audit if args.first_audit else hostile_attacks.attacks
    rows = []
    for name in [n for n in table() if n.startswith(tuple(args.only.split(",")))]:
        with service(args.repository, args.service_root) as (url, grpc_target, proc):
            target = Target(url, grpc_target, httpx.get(f"{url}/v1/models", timeout=30).json()["name"])
            rows.append(run(target, proc, name, table()[name], args.count))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"{'attack':44} {'statuses':34} {'CPU/req s':>9} {'RSS +MB':>7} {'probe ms':>8} {'ordinary ms':>11} "
          f"{'series+':>7} {'500s':>4}  note")
    for r in rows:
        print(f"{r['attack']:44} {json.dumps(r['statuses']):34} {r['cpu_s_per_request']:>9.2f} "
              f"{r['peak_rss_growth_mb']:>7.0f} {r['worst_probe_ms']:>8.0f} {r['ordinary_worst_ms']:>11.0f} "
              f"{r['series_added']:>7} {r['server_errors']:>4}  {r['note']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
