"""The load generator against real servers on loopback: closed-loop counts, open-loop latency from
the scheduled send (no coordinated omission), outcomes by status, and bounds on every run."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from loadtest.generator import LoadSpec, run_load_sync
from loadtest.images import Corpus, generate_jpegs
from loadtest.mix import Mix

CORPUS = Corpus(generate_jpegs(4, width=160, height=120), "generated")


def test_closed_loop_sends_exactly_the_requests_asked_and_reads_the_server_view(server) -> None:
    spec = LoadSpec(url=server.url, mix=Mix.parse("1x1:0.5,10x2:0.5"), concurrency=4, requests=24, duration_s=60)
    result = run_load_sync(spec, CORPUS)
    assert result["requests"] == result["ok"] == 24
    assert result["outcomes"] == {"200": 24}
    assert set(result["modes"]) == {"1x1", "10x2"}
    assert sum(m["ok"] for m in result["modes"].values()) == 24
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert result["cdf"][-1][1] == pytest.approx(1.0)
    server_view = result["server"]
    assert server_view["requests_by_status"]["200"] >= 24
    rows = sum(1 * m["ok"] if name == "1x1" else 20 * m["ok"] for name, m in result["modes"].items())
    assert server_view["evaluated_rows"] == rows  # every evaluation the run asked for, and no other
    assert server_view["mean_batch_rows"] >= 1
    assert 0 < result["generator"]["cores"] < 2


def test_latencies_are_timed_finer_than_the_event_loop_clock(server) -> None:
    # uvloop's loop.time() ticks in whole ms: a run timed by it has every latency on a ms boundary.
    spec = LoadSpec(url=server.url, mix=Mix.parse("1x1"), concurrency=1, requests=40, duration_s=60)
    result = run_load_sync(spec, CORPUS)
    fractions = {round(ms % 1, 1) for ms, _ in result["cdf"]}
    assert len(fractions) > 3, result["cdf"]


def test_errors_are_counted_by_status(server) -> None:
    spec = LoadSpec(url=server.url, mix=Mix.parse("1x1"), concurrency=2, requests=6, duration_s=60)
    result = run_load_sync(spec, Corpus([b"not an image"], "garbage"))
    assert result["outcomes"] == {"422": 6}
    assert result["ok"] == 0 and result["latency_ms"] == {} and result["error_latency_ms"]["p50"] > 0


def test_a_dead_server_gives_connection_errors_not_a_hang() -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = LoadSpec(url=f"http://127.0.0.1:{port}", mix=Mix.parse("1x1"), concurrency=2, requests=4, duration_s=10)
    result = run_load_sync(spec, CORPUS)
    assert result["outcomes"] == {"connect_error": 4}


class StallingServer:
    """A real HTTP server that holds the first request for `stall_s`, then answers everything at once."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.release: asyncio.Event | None = None
        self.runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        if self.release is None:
            self.release = asyncio.Event()
            # The server under test stalls (a GC pause, a slow batch); this is its behaviour, not test timing.
            self.loop.call_later(self.stall_s, self.release.set)
        await self.release.wait()
        return web.json_response({"ok": True})

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/classify", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> str:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def stalling() -> Iterator[str]:
    with StallingServer(stall_s=0.4) as url:
        yield url


def test_open_loop_latency_counts_from_the_scheduled_send(stalling: str) -> None:
    # One connection: while the server stalls, the next 19 requests cannot even be sent. Timed from
    # the actual send they would look ~instant (coordinated omission); timed from when they were
    # due, each carries the stall. 20 arrivals at 200/s are all due within ~0.2 s (9 sd below 0.4).
    spec = LoadSpec(url=stalling, mix=Mix.parse("1x1"), rate=200.0, requests=20, duration_s=30, connections=1)
    result = run_load_sync(spec, CORPUS)
    assert result["outcomes"] == {"200": 20}
    assert result["latency_ms"]["p50"] >= 150  # >= 0.4 s stall minus ~0.2 s of schedule
    assert result["latency_ms"]["max"] >= 350


def test_every_run_is_bounded() -> None:
    with pytest.raises(ValueError, match="bounded"):
        LoadSpec(url="http://127.0.0.1:1", mix=Mix.parse("1x1"), concurrency=1, duration_s=None)
    with pytest.raises(ValueError, match="exactly one"):
        LoadSpec(url="http://127.0.0.1:1", mix=Mix.parse("1x1"), concurrency=1, rate=5.0)
    with pytest.raises(ValueError, match="rate"):
        LoadSpec(url="http://127.0.0.1:1", mix=Mix.parse("1x1"), rate=float("inf"))
