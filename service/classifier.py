"""Classifier: encoded images -> top-k answers, the request path of design.md 2 minus HTTP.

Admission (by estimated time, then queue room) comes first, then decoding and cropping run in a
thread pool; rows go through the scheduler to every member; probabilities are averaged over crops,
then members, then ranked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service import ladder, metrics
from service.adaptive import Walk
from service.errors import DeadlineExceeded, InvalidImage, ServiceError
from service.postprocess import Prediction, average, top_k
from service.preprocess import preprocess
from service.scheduling import Scheduler
from service.stopping import StoppingRule


@dataclass(frozen=True)
class Probabilities:
    values: np.ndarray  # images x 1000
    members: list[str]
    preprocess_s: float  # admission to rows ready: waiting for a decode thread, then decoding
    queue_s: float
    inference_s: float


@dataclass(frozen=True)
class Classification:
    members: list[str]
    crops: int
    evaluations: int  # per image: crops x members, the paper's "cost" (Table 3)
    predictions: list[list[Prediction]]  # one list per image, best first
    timings_ms: dict[str, float] = field(default_factory=dict)


class Classifier:
    def __init__(
        self, scheduler: Scheduler, labels: list[tuple[str, str]], *, max_pixels: int, max_aspect: float, threads: int
    ) -> None:
        self.scheduler = scheduler
        self.labels = labels
        self.max_pixels, self.max_aspect = max_pixels, max_aspect
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="preprocess")

    @property
    def names(self) -> list[str]:
        """Every member, ensemble order; the first is the primary."""
        return self.scheduler.names

    def members(self, count: int) -> list[str]:
        """The first `count` members (the paper's ensemble order); BadRequest outside 1..all."""
        return self.scheduler.members(count)

    def choose(
        self, images: int, *, crops: int | None, models: int | None, deadline: float | None,
        members: list[str] | None = None,
    ) -> tuple[int, list[str]]:
        """crops=auto / ensemble=auto (None): the most accurate Table 3 rung whose estimated
        completion fits the deadline and the queue-wait bound now (service/ladder.py).
        `members`: the request named its members (a v2 member model): only crops are chosen."""
        rungs = ladder.ladder(crops=crops, models=len(members) if members else models, members=len(self.names))
        now = asyncio.get_running_loop().time()

        def chosen(mode: ladder.Mode) -> list[str]:
            return members or self.members(mode.models)

        def fits(mode: ladder.Mode) -> bool:
            try:
                self.scheduler.check(images * mode.crops, chosen(mode), deadline=deadline, now=now)
            except ServiceError:
                return False
            return True

        mode = ladder.choose(rungs, fits)
        metrics.AUTO_CHOICES.labels(mode.label).inc()
        return mode.crops, chosen(mode)

    def check_room(self, rows: int, members: list[str], *, deadline: float | None) -> None:
        """Raise now what admission would say of `rows` (a probe: nothing stays held)."""
        with self.scheduler.admit(rows, members, deadline=deadline):
            pass

    def _preprocess(self, data: bytes, crops: int) -> np.ndarray:
        started = time.perf_counter()
        rows = preprocess(data, crops, max_pixels=self.max_pixels, max_aspect=self.max_aspect)
        metrics.PREPROCESS_DURATION.labels(str(crops)).observe(time.perf_counter() - started)
        return rows

    async def prepare(self, images: list[bytes], crops: int) -> np.ndarray:
        """Decode and crop every image off the event loop: uint8 [images x crops, 224, 224, 3].

        When one image fails (or the request is cancelled) the decodes not yet started are dropped
        and those running are waited for, so the request's reservation is released only once the
        pool holds nothing of it: a garbage first image no longer leaves 15 decodes queued (issue 12).
        """
        failed = threading.Event()  # set by the first failure, in its thread: queued siblings skip at once

        def job(data: bytes) -> np.ndarray:
            if failed.is_set():
                raise InvalidImage("skipped: another image of the request failed")
            try:
                return self._preprocess(data, crops)
            except BaseException:
                failed.set()
                raise

        jobs = [self._executor.submit(job, d) for d in images]
        try:
            parts = await asyncio.gather(*map(asyncio.wrap_future, jobs))
        except BaseException:
            failed.set()
            running = [job for job in jobs if not job.cancel()]
            await asyncio.gather(*map(asyncio.wrap_future, running), return_exceptions=True)
            raise
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def probabilities(
        self, images: list[bytes] | np.ndarray, crops: int, members: list[str], *, deadline: float | None
    ) -> Probabilities:
        """Encoded images (decoded and cropped here) or ready rows [images, 224, 224, 3] on `members`:
        mean over each image's crops, then over members.

        Admission comes before decoding: past capacity the request is refused (503), and one that
        could never meet its deadline (422), before it costs any work.
        """
        started = time.perf_counter()
        with self.scheduler.admit(len(images) * crops, members, deadline=deadline) as admission:
            rows = images if isinstance(images, np.ndarray) else await self.prepare(images, crops)
            preprocess_s = time.perf_counter() - started
            if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                raise DeadlineExceeded("the request's deadline passed before it was queued")
            results = await admission.run(rows, deadline=deadline)
        return Probabilities(
            average([r.outputs for r in results], len(images)),
            members,
            preprocess_s,
            max(r.queue_s for r in results),
            max(r.run_s for r in results),
        )

    async def classify(
        self, images: list[bytes], *, crops: int, members: list[str], topk: int, deadline: float | None
    ) -> Classification:
        started = time.perf_counter()
        probs = await self.probabilities(images, crops, members, deadline=deadline)
        timings = {
            "preprocess": probs.preprocess_s * 1000,
            "queue": probs.queue_s * 1000,
            "inference": probs.inference_s * 1000,
            "total": (time.perf_counter() - started) * 1000,
        }
        predictions = [top_k(p, topk, self.labels) for p in probs.values]
        return Classification(members, crops, crops * len(members), predictions, timings)

    def walk(
        self, images: list[bytes] | np.ndarray, *, crops: int | None, models: int | None, adaptive: bool,
        partial: bool, deadline: float | None, rule: StoppingRule, members: list[str] | None = None,
    ) -> Walk:
        """crops/ensemble=adaptive (None) or partial=true: a walk up the Table 3 ladder (service/adaptive.py).
        `members`: the request named its members (a v2 member model), else the ensemble order."""
        order = members or self.names
        walk = ladder.climb(crops=crops, models=models, members=len(order), anytime=partial)
        return Walk(
            self.scheduler, self._executor, images, order, walk, rule=rule, adaptive=adaptive, partial=partial,
            deadline=deadline, max_pixels=self.max_pixels, max_aspect=self.max_aspect,
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
