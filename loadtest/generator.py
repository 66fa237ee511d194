"""The load generator: open loop (Poisson arrivals at a fixed rate) or closed loop (N clients), one
asyncio process over aiohttp, latency measured from the scheduled send (no coordinated omission).

Why our own and not Locust (docs/loadtest.md): Locust's users are closed loops that time from the
moment a request is actually sent, so a stalled server silently lowers the offered load and hides
its own queueing; here an open-loop request is late from the instant it was due, whatever the
client or server was doing.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loadtest.images import Corpus
from loadtest.mix import Mix
from loadtest.protocol import Protocol, RequestBook
from loadtest.recording import CONNECT_ERROR, NOT_SENT, TIMEOUT, Recorder, cdf, latency_summary
from loadtest.scrape import Snapshot, server_stats

# Every timestamp of a run: uvloop's loop.time() ticks in whole milliseconds, too coarse for a 5 ms answer.
clock = time.perf_counter


@dataclass(frozen=True)
class LoadSpec:
    """One run. Exactly one of `rate` (open loop) and `concurrency` (closed loop); it ends after
    `duration_s` or `requests` measured requests, whichever comes first."""

    url: str
    mix: Mix
    rate: float | None = None
    concurrency: int | None = None
    duration_s: float | None = 30.0
    requests: int | None = None
    warmup_s: float = 0.0
    protocol: Protocol = "v1"
    v2_model: str = "googlenet"
    grpc_target: str | None = None  # host:port of the gRPC API (protocol "grpc")
    timeout_s: float = 120.0
    max_outstanding: int = 2048  # open loop: arrivals beyond this many in flight count as not_sent
    connections: int = 256
    seed: int = 0
    progress: bool = False
    scrape_metrics: bool = True

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.concurrency is None):
            raise ValueError("give exactly one of rate (open loop) and concurrency (closed loop)")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number of requests/s, got {self.rate}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.duration_s is None and self.requests is None:
            raise ValueError("give a duration, a request count, or both: every run is bounded")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration must be positive, got {self.duration_s}")
        if self.requests is not None and self.requests < 1:
            raise ValueError(f"requests must be >= 1, got {self.requests}")
        if self.protocol == "grpc" and not self.grpc_target:
            raise ValueError("the grpc protocol needs grpc_target (host:port)")
        if self.warmup_s < 0 or self.timeout_s <= 0:
            raise ValueError("warm-up must be >= 0 and timeout > 0")

    @property
    def loop_kind(self) -> str:
        return "open" if self.rate is not None else "closed"

    def describe(self) -> dict[str, Any]:
        load = {"rate_rps": self.rate} if self.rate is not None else {"concurrency": self.concurrency}
        return {"url": self.url, "protocol": self.protocol, "loop": self.loop_kind, **load, "mix": str(self.mix),
                "duration_s": self.duration_s, "requests": self.requests, "warmup_s": self.warmup_s}


@dataclass
class _Run:
    spec: LoadSpec
    book: RequestBook
    session: aiohttp.ClientSession
    recorder: Recorder
    end: float  # clock() after which nothing new is sent
    rng: random.Random
    issued: int = 0  # measured requests sent (or due) so far
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    grpc_call: Any = None  # a bytes-in, bytes-out ModelInfer call: no protobuf work in the generator

    def more(self, now: float) -> bool:
        limit = self.spec.requests
        return now < self.end and (limit is None or self.issued < limit)

    async def one(self, scheduled: float) -> None:
        mode = self.spec.mix.choose(self.rng)
        request = self.book.get(mode, self.rng.randrange(1 << 30))
        if self.grpc_call is not None:
            outcome = await _grpc_outcome(self.grpc_call, request.body, self.spec.timeout_s)
            self.recorder.record(mode.name, scheduled, clock(), outcome)
            return
        try:
            async with self.session.post(self.spec.url + request.path, data=request.body,
                                         headers=request.headers) as response:
                await response.read()
                outcome = str(response.status)
        except TimeoutError:
            outcome = TIMEOUT
        except aiohttp.ClientError:
            outcome = CONNECT_ERROR
        self.recorder.record(mode.name, scheduled, clock(), outcome)

    def counts(self, now: float) -> None:
        if now >= self.recorder.start:
            self.issued += 1

    async def open_loop(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        due = start
        while True:
            due += self.rng.expovariate(self.spec.rate)
            if not self.more(due):
                break
            if (wait := due - clock()) > 0:
                await asyncio.sleep(wait)
            self.counts(due)
            if len(self.inflight) >= self.spec.max_outstanding:
                self.recorder.record(self.spec.mix.choose(self.rng).name, due, clock(), NOT_SENT)
                continue
            task = loop.create_task(self.one(due))  # due, not now: a late send counts against the server
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)
        if self.inflight:
            await asyncio.wait(set(self.inflight))

    async def closed_loop(self) -> None:
        async def client() -> None:
            while self.more(now := clock()):
                self.counts(now)
                await self.one(now)

        await asyncio.gather(*(client() for _ in range(self.spec.concurrency or 1)))

    async def report_progress(self, started: float) -> None:
        last, last_ok = started, 0
        while True:
            await asyncio.sleep(1.0)
            now, rec = clock(), self.recorder
            window = latency_summary(rec.take_window())
            phase = "warm-up" if now < rec.start else f"{now - rec.start:5.0f}s"
            ok_per_s = (rec.ok - last_ok) / (now - last)
            print(f"{phase}  sent {self.issued:6d}  done {rec.completed:6d}  ok/s {ok_per_s:7.1f}"
                  f"  p50 {window.get('p50', 0):8.1f} ms  p99 {window.get('p99', 0):8.1f} ms"
                  f"  errors {rec.completed - rec.ok:5d}  in flight {len(self.inflight)}", file=sys.stderr, flush=True)
            last, last_ok = now, rec.ok


# gRPC codes as the HTTP statuses the service gives the same errors, so results read alike.
_GRPC_AS_HTTP = {"OK": "200", "INVALID_ARGUMENT": "400", "NOT_FOUND": "404", "RESOURCE_EXHAUSTED": "413",
                 "UNAVAILABLE": "503", "DEADLINE_EXCEEDED": "504"}


async def _grpc_outcome(call: Any, body: bytes, timeout_s: float) -> str:
    import grpc

    try:
        await call(body, timeout=timeout_s)
        return "200"
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "Deadline Exceeded" == exc.details():
            return TIMEOUT  # the client's own deadline, not the server's answer
        return _GRPC_AS_HTTP.get(exc.code().name, f"grpc_{exc.code().name.lower()}")


async def _scrape(session: aiohttp.ClientSession, url: str) -> Snapshot | None:
    try:
        async with session.get(url + "/metrics") as response:
            return Snapshot.parse(await response.text()) if response.status == 200 else None
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None


async def run_load(spec: LoadSpec, corpus: Corpus) -> dict[str, Any]:
    """Run `spec` against its server; the result document (see docs/loadtest.md, "Results")."""
    loop = asyncio.get_running_loop()
    book = RequestBook(corpus.images, spec.mix.modes, spec.protocol, spec.v2_model)
    connector = aiohttp.TCPConnector(limit=spec.connections)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        before = await _scrape(session, spec.url) if spec.scrape_metrics else None
        started = clock()
        recorder = Recorder(start=started + spec.warmup_s)
        end = recorder.start + spec.duration_s if spec.duration_s is not None else math.inf
        run = _Run(spec, book, session, recorder, end, random.Random(spec.seed))
        channel = _grpc_channel(spec.grpc_target) if spec.protocol == "grpc" else None
        if channel is not None:
            run.grpc_call = channel.unary_unary(book.get(spec.mix.modes[0], 0).path)
        progress = loop.create_task(run.report_progress(started)) if spec.progress else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        try:
            await (run.open_loop(started) if spec.rate is not None else run.closed_loop())
        finally:
            if progress:
                progress.cancel()
            if channel is not None:
                await channel.close()
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
        after = await _scrape(session, spec.url) if before is not None else None
    return summarize(spec, corpus, recorder, cpu_s=cpu_s, wall_s=wall_s,
                     server=server_stats(before, after) if before and after else None)


def _grpc_channel(target: str | None) -> Any:
    import grpc  # only the gRPC protocol needs it

    return grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", -1)])


def summarize(spec: LoadSpec, corpus: Corpus, recorder: Recorder, *, cpu_s: float, wall_s: float,
              server: dict[str, Any] | None) -> dict[str, Any]:
    elapsed = max(recorder.last_done - recorder.start, 1e-9)  # measured start -> last answer
    ok_histogram = recorder.merged(ok=True)
    modes = {}
    for mode in spec.mix.modes:
        h = recorder.merged(ok=True, mode=mode.name)
        count = h.get_total_count()
        modes[mode.name] = {"ok": count, "images_per_s": count / elapsed,
                            "evaluations_per_s": count * mode.evaluations / elapsed, "latency_ms": latency_summary(h)}
    return {
        "spec": spec.describe(),
        "images": {"source": corpus.source, "count": len(corpus.images), "mean_bytes": round(corpus.mean_bytes)},
        "elapsed_s": elapsed,
        "requests": recorder.completed,
        "ok": recorder.ok,
        "throughput_rps": recorder.ok / elapsed,
        "evaluations_per_s": sum(m["evaluations_per_s"] for m in modes.values()),
        "offered_rps": spec.rate,
        # What the Poisson schedule actually sent (it varies around `rate`, a lot in short runs).
        "arrivals_rps": recorder.completed / spec.duration_s if spec.rate and spec.duration_s else None,
        "outcomes": dict(recorder.outcomes),
        "latency_ms": latency_summary(ok_histogram),
        "error_latency_ms": latency_summary(recorder.merged(ok=False)),
        "modes": modes,
        "cdf": cdf(ok_histogram),
        "timeline": recorder.timeline_rows(),
        "latency_by_send": recorder.timeline_rows(by_send=True),
        "generator": {"cpu_s": cpu_s, "wall_s": wall_s, "cores": cpu_s / wall_s if wall_s else 0.0},
        "server": server,
    }


def run_load_sync(spec: LoadSpec, corpus: Corpus) -> dict[str, Any]:
    """`run_load` on a fresh event loop (uvloop where installed: less generator CPU per request)."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # the plain loop measures the same, at a higher CPU cost
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_load(spec, corpus))
