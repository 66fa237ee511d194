"""Adaptive test-time compute: a request walks up the Table 3 ladder, cheapest rung first.

After each rung an image stops when its average is confident enough (service/stopping.py), or
when the next rung would not fit its time; the others go on. With partial=true the request is
also answered at its deadline from what finished (anytime inference), and a fixed mode asked so
walks the rungs below it first. Admission takes the first rung's cost; every later rung is
admitted like a request of its own, and one that would not fit ends the walk instead of failing it.

Nothing is evaluated twice. Crops follow `crops.nested_plan`, so rung c's crops are the first c,
and members the ensemble order: from (c0, m0) to (c1, m1) the first m0 members run crops
c0..c1-1 and the next m1 - m0 crops 0..c1-1. Evaluations count as the paper counts them, crops x
members run, and a complete rung's average is the fixed mode's: mean over crops, then members.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from service import ladder, metrics
from service.batching import Ensemble, Reservation, Result
from service.decode_cost import DecodeLimits
from service.errors import DeadlineExceeded, InvalidImage, Overloaded, TooCostly
from service.preprocess import ImageCrops
from service.stopping import StoppingRule

T = TypeVar("T")
X = TypeVar("X")


@dataclass(frozen=True)
class Group:
    """Work of one rung admitted together: the same crops of each image on some members."""

    members: tuple[str, ...]
    start: int
    stop: int


def steps(walk: Sequence[ladder.Mode], members: Sequence[str]) -> list[list[Group]]:
    """What each rung adds to the one below it."""
    out, crops, models = [], 0, 0
    for rung in walk:
        groups = []
        if models and rung.crops > crops:  # the members already run: the new crops
            groups.append(Group(tuple(members[:models]), crops, rung.crops))
        if rung.models > models:  # the new members: every crop so far
            groups.append(Group(tuple(members[models : rung.models]), 0, rung.crops))
        out.append(groups)
        crops, models = rung.crops, rung.models
    return out


@dataclass(frozen=True)
class ImageAnswer:
    probabilities: np.ndarray  # [classes]: mean over each member's crops, then over members
    evaluations: int  # crops x members run for this image
    rung: str | None  # the last rung completed ("10x7"), None if the deadline cut the first
    stop: str  # why its walk ended: service/stopping.py REASONS


@dataclass(frozen=True)
class WalkAnswer:
    images: list[ImageAnswer]
    members: list[str]  # every member that ran, for any image
    crops: int  # the most crops a member ran, for any image
    partial: bool  # the deadline (or, for a fixed mode, the time left) cut the walk short
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def evaluations(self) -> int:
        """The most any image used (each image's own count is in `images`)."""
        return max(i.evaluations for i in self.images)

    @property
    def values(self) -> np.ndarray:
        return np.stack([i.probabilities for i in self.images])


class _Given:
    """An image the client already cropped (a v2 tensor model): its one crop."""

    def __init__(self, row: np.ndarray) -> None:
        self.row = row

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.row[None][start:stop]


class Walk:
    """One request's walk. `run` answers; after it was cancelled at the deadline (the client's
    timer), `at_deadline` answers from what finished."""

    def __init__(
        self, ensemble: Ensemble, pool: ThreadPoolExecutor, images: list[bytes] | np.ndarray,
        members: Sequence[str], walk: list[ladder.Mode], *, rule: StoppingRule, adaptive: bool,
        partial: bool, deadline: float | None, max_pixels: int, max_aspect: float,
        limits: DecodeLimits | None = None,
    ) -> None:
        if isinstance(images, np.ndarray) and walk[-1].crops != 1:
            raise ValueError("crops made by the client walk the members only")
        self.ensemble, self.pool, self.images = ensemble, pool, images
        self.walk, self.steps = walk, steps(walk, members)
        self.members = list(members[: walk[-1].models])
        self.rule, self.adaptive, self.partial, self.deadline = rule, adaptive, partial, deadline
        self.mode = "adaptive" if adaptive else "anytime"
        self.max_pixels, self.max_aspect, self.limits = max_pixels, max_aspect, limits
        n = len(images)
        self.stop: list[str | None] = [None] * n
        self.reached: list[int] = [-1] * n  # index of the last rung each image completed
        self._crops: list[ImageCrops | _Given] = []
        self._sums: dict[str, np.ndarray] = {}  # member -> [images, classes]: sum of its crops' outputs
        self._done = np.zeros((n, len(self.members)), dtype=np.int64)  # crops run per image and member
        self._pending: dict[asyncio.Future[Result], tuple[list[int], int, int]] = {}
        self._seconds = {"preprocess": 0.0, "queue": 0.0, "inference": 0.0}
        self._started = time.perf_counter()
        self._answer: WalkAnswer | None = None

    async def run(self) -> WalkAnswer:
        try:
            await self._walk()
        except DeadlineExceeded:  # rows expired in a queue, or the deadline passed while cropping
            if not self.partial:
                raise
            return self.at_deadline()
        return self._finish()

    def at_deadline(self) -> WalkAnswer:
        """What finished, when partial answers were asked for; else (or with nothing) 504."""
        if self._answer is not None:
            return self._answer
        for future in list(self._pending):  # came back, but the walk was cancelled before it saw them
            if future.done():
                self._fold(future)
        if not self.partial or not (self._done > 0).any(axis=1).all():
            raise DeadlineExceeded("the request's deadline passed before any of its work finished")
        for i, stop in enumerate(self.stop):
            if stop is None:
                self.stop[i] = "deadline"
        return self._finish()

    async def _walk(self) -> None:
        loop = asyncio.get_running_loop()
        for k, (rung, groups) in enumerate(zip(self.walk, self.steps, strict=True)):
            active = [i for i, stop in enumerate(self.stop) if stop is None]
            if not active:
                return
            with ExitStack() as held:
                try:
                    reservations = [
                        held.enter_context(self.ensemble.admit(
                            len(active) * (g.stop - g.start), list(g.members), deadline=self.deadline
                        ))
                        for g in groups
                    ]
                except (Overloaded, TooCostly):
                    if k == 0:
                        raise  # the request itself is refused: 503 or 422
                    for i in active:
                        self.stop[i] = "no_time"
                    return
                started = time.perf_counter()
                if k == 0:
                    await self._decode()
                rows = await self._in_pool(functools.partial(self._rows, groups), active)
                self._seconds["preprocess"] += time.perf_counter() - started
                if self.deadline is not None and loop.time() >= self.deadline:
                    raise DeadlineExceeded("the request's deadline passed before its rows were queued")
                results = await self._run(active, groups, reservations, rows)
            self._seconds["queue"] += max(r.queue_s for r in results)
            self._seconds["inference"] += max(r.run_s for r in results)
            self._rung_done(k, rung, active)

    def _rows(self, groups: list[Group], image: int) -> list[np.ndarray]:
        return [self._crops[image].rows(g.start, g.stop) for g in groups]

    async def _run(
        self, active: list[int], groups: list[Group], reservations: list[Reservation], rows: list[list[np.ndarray]]
    ) -> list[Result]:
        futures = []
        try:
            for gi, (g, reservation) in enumerate(zip(groups, reservations, strict=True)):
                block = np.concatenate([per_image[gi] for per_image in rows])
                submitted = reservation.submit(block, deadline=self.deadline)
                for member, future in zip(g.members, submitted, strict=True):
                    self._pending[future] = (active, self.members.index(member), g.stop - g.start)
                    future.add_done_callback(self._fold)  # a member that finishes counts at once
                    futures.append(future)
            results = list(await asyncio.gather(*futures))
        finally:
            for future in futures:  # a member failed or the request was cancelled: free the others
                future.cancel()
        for reservation in reservations:
            reservation.observe()
        return results

    def _fold(self, future: asyncio.Future[Result]) -> None:
        where = self._pending.pop(future, None)
        if where is None or future.cancelled() or future.exception() is not None:
            return
        active, m, width = where
        outputs = future.result().outputs
        sums = self._sums.setdefault(self.members[m], np.zeros((len(self.stop), outputs.shape[1])))
        sums[active] += outputs.reshape(len(active), width, -1).sum(axis=1, dtype=np.float64)
        self._done[active, m] += width

    def _average(self, images: list[int]) -> np.ndarray:
        """[len(images), classes]: each member's crop mean, then the mean over members that ran."""
        total, counted = 0.0, np.zeros(len(images))
        for m, member in enumerate(self.members):
            done = self._done[images, m]
            if member in self._sums and done.any():
                total = total + self._sums[member][images] / np.maximum(done, 1)[:, None]
                counted += done > 0
        return total / counted[:, None]

    def _rung_done(self, k: int, rung: ladder.Mode, active: list[int]) -> None:
        last = k == len(self.walk) - 1
        confident = self.rule.confident(self._average(active), rung.label) if self.adaptive and not last else None
        for j, i in enumerate(active):
            self.reached[i] = k
            if last:
                self.stop[i] = "last_rung"
            elif confident is not None and confident[j]:
                self.stop[i] = "confident"

    async def _decode(self) -> None:
        if isinstance(self.images, np.ndarray):
            self._crops = [_Given(row) for row in self.images]
            return
        top, nested = self.walk[-1].crops, len({r.crops for r in self.walk}) > 1
        failed = threading.Event()  # the first failure: images not yet started are skipped

        def decode(data: bytes) -> ImageCrops:
            if failed.is_set():
                raise InvalidImage("skipped: another image of the request failed")
            try:
                return ImageCrops(data, top, nested=nested, max_pixels=self.max_pixels, max_aspect=self.max_aspect,
                                  limits=self.limits)
            except BaseException:
                failed.set()
                raise

        self._crops = await self._in_pool(decode, self.images, failed)

    async def _in_pool(
        self, fn: Callable[[X], T], items: Sequence[X], failed: threading.Event | None = None
    ) -> list[T]:
        """`fn` over `items` in the decode threads; on failure or cancellation the jobs not started
        are dropped and the running ones waited for, so nothing of the request outlives it."""
        jobs = [self.pool.submit(fn, item) for item in items]
        try:
            return list(await asyncio.gather(*map(asyncio.wrap_future, jobs)))
        except BaseException:
            if failed is not None:
                failed.set()
            running = [job for job in jobs if not job.cancel()]
            await asyncio.gather(*map(asyncio.wrap_future, running), return_exceptions=True)
            raise

    def _finish(self) -> WalkAnswer:
        if self._answer is not None:
            return self._answer
        everyone = list(range(len(self.stop)))
        probabilities = self._average(everyone)
        images = [
            ImageAnswer(
                probabilities[i], int(self._done[i].sum()),
                self.walk[self.reached[i]].label if self.reached[i] >= 0 else None, self.stop[i] or "last_rung",
            )
            for i in everyone
        ]
        ran = self._done.max(axis=0)
        cut = {"deadline"} if self.adaptive else {"deadline", "no_time"}
        answer = WalkAnswer(
            images, [m for m, n in zip(self.members, ran, strict=True) if n], int(ran.max()),
            partial=any(i.stop in cut for i in images),
            timings_ms={k: v * 1000 for k, v in self._seconds.items()}
            | {"total": (time.perf_counter() - self._started) * 1000},
        )
        for image in images:
            metrics.WALK_EVALUATIONS.labels(self.mode).observe(image.evaluations)
            metrics.WALK_STOPS.labels(self.mode, image.stop).inc()
        if answer.partial:
            metrics.PARTIAL_ANSWERS.labels(self.mode).inc()
        self._answer = answer
        return answer
