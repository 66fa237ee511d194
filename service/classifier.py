"""Classifier: encoded images -> top-k answers, the request path (docs/architecture.md) minus HTTP.

Admission (by estimated time, then queue room) comes first, then decoding and cropping run in a
thread pool; rows go through the ensemble to every member; probabilities are averaged over crops,
then members, then ranked.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from PIL import Image

from service import ladder, metrics
from service.adaptive import Walk
from service.admission import PreprocessCost
from service.batching import Ensemble, Reservation, Result
from service.crops import CROP, CROP_COUNTS, crop_plan, largest_scale
from service.decode_cost import DecodeLimits
from service.errors import DeadlineExceeded, InvalidImage, ServiceError
from service.postprocess import Prediction, average, top_k
from service.preprocess import fill_crops, load, open_image, scale_groups
from service.stopping import StoppingRule

T = TypeVar("T")

@dataclass(frozen=True)
class Probabilities:
    values: np.ndarray  # images x 1000
    members: list[str]
    preprocess_s: float  # admission to rows ready: waiting for a decode thread, then decoding
    results: list[Result]  # one per member, in `members` order
    decode_s: float = 0.0  # summed over the images
    crops_s: float = 0.0

    @property
    def queue_s(self) -> float:
        return max(r.queue_s for r in self.results)

    @property
    def inference_s(self) -> float:
        return max(r.run_s for r in self.results)


@dataclass(frozen=True)
class Classification:
    members: list[str]
    crops: int
    evaluations: int  # per image: crops x members, the paper's "cost" (Table 3)
    predictions: list[list[Prediction]]  # one list per image, best first
    timings_ms: dict[str, object] = field(default_factory=dict)  # stage -> ms, and "runs": one dict per member


class Classifier:
    def __init__(
        self, ensemble: Ensemble, labels: list[tuple[str, str]], *, max_pixels: int, max_aspect: float, threads: int,
        prep_cost: PreprocessCost | None = None, limits: DecodeLimits | None = None,
    ) -> None:
        self.ensemble = ensemble
        self.labels = labels
        self.max_pixels, self.max_aspect = max_pixels, max_aspect
        self.threads = threads
        self.prep_cost = prep_cost or PreprocessCost()
        self.limits = limits  # what one decode may cost (service/decode_cost.py)
        # Every mode crops/ensemble=auto can choose, known now: the metric's label values never come from input.
        members = len(ensemble.names)
        self._auto_modes = {
            mode.label
            for crops in (None, *CROP_COUNTS) for models in (None, *range(1, members + 1))
            for mode in ladder.ladder(crops=crops, models=models, members=members)
        }
        for label in self._auto_modes:
            metrics.AUTO_CHOICES.labels(label)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="preprocess")
        self._decoding: Counter[int] = Counter()  # images admitted and not yet cropped, by crop count
        self._decoding_lock = threading.Lock()

    def calibrate(self) -> None:
        """Seed the decode cost of each crop count on a generated ImageNet-sized photo (500 x 375 JPEG),
        best of three, so admission knows it before the first request."""
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:375, 0:500]
        pixels = np.stack([x * 0.5, y * 0.6, (x + y) * 0.25], axis=-1) + rng.normal(0, 12, (375, 500, 3))
        encoded = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(encoded, format="JPEG", quality=90)
        never = threading.Event()
        for crops in CROP_COUNTS:
            times = []
            for _ in range(3):
                image, decode_s, held = self._open(encoded.getvalue(), crops, never)
                with held:
                    plan = crop_plan(image.width, image.height, crops)
                    out = np.empty((len(plan), CROP, CROP, 3), dtype=np.uint8)
                    times.append(decode_s + self._fill(image, plan, out, never))
            self.prep_cost.seed(crops, min(times))

    def prepare_estimate(self, images: int, crops: int) -> float:
        """Seconds until a request's rows are ready: the decode threads finish the images admitted
        before it, then its own (in parallel, up to one thread each)."""
        with self._decoding_lock:
            ahead = sum(n * self.prep_cost.per_image(c) for c, n in self._decoding.items())
        own = self.prep_cost.per_image(crops) * math.ceil(images / self.threads)
        return ahead / self.threads + own

    @property
    def names(self) -> list[str]:
        """Every member, ensemble order; the first is the primary."""
        return self.ensemble.names

    def members(self, count: int) -> list[str]:
        """The first `count` members (the paper's ensemble order); BadRequest outside 1..all."""
        return self.ensemble.members(count)

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
                prepare_s = self.prepare_estimate(images, mode.crops)
                self.ensemble.check(images * mode.crops, chosen(mode), deadline=deadline, now=now, prepare_s=prepare_s)
            except ServiceError:
                return False
            return True

        mode = ladder.choose(rungs, fits)
        if mode.label in self._auto_modes:  # a member count out of range is refused by `members` below
            metrics.AUTO_CHOICES.labels(mode.label).inc()
        return mode.crops, chosen(mode)

    def admit(self, images: int, crops: int, members: list[str], *, deadline: float | None) -> Reservation:
        """Admit `images` x `crops` rows on `members` now, by time then room (service/batching/ensemble.py),
        before the images are decoded: the reservation is what `probabilities` then runs in."""
        prepare_s = self.prepare_estimate(images, crops)
        return self.ensemble.admit(images * crops, members, deadline=deadline, prepare_s=prepare_s)

    def check(self, images: int, crops: int, members: list[str], *, deadline: float | None) -> None:
        """Raise now what admission by time would say (nothing is held, nothing counted)."""
        now = asyncio.get_running_loop().time()
        self.ensemble.check(images * crops, members, deadline=deadline, now=now,
                            prepare_s=self.prepare_estimate(images, crops))

    def _open(
        self, data: bytes, crops: int, failed: threading.Event
    ) -> tuple[Image.Image, float, contextlib.ExitStack]:
        """Price and decode one image (service/preprocess.py): (image, seconds, its hold on the decode
        memory budget, to close once its crops are made)."""
        if failed.is_set():
            raise InvalidImage("skipped: another image of the request failed")
        started, held = time.perf_counter(), contextlib.ExitStack()
        try:
            opened = open_image(data, max_pixels=self.max_pixels, shorter_side=largest_scale(crops),
                                max_aspect=self.max_aspect, limits=self.limits)
            if self.limits is not None:
                held.enter_context(self.limits.memory.hold(opened.cost.bytes))
            image = load(opened, self.limits)
        except BaseException:
            held.close()
            failed.set()  # in its thread: the request's queued work skips at once
            raise
        return image, time.perf_counter() - started, held

    @staticmethod
    def _fill(image: Image.Image, plan: list, out: np.ndarray, failed: threading.Event) -> float:
        if failed.is_set():
            raise InvalidImage("skipped: another image of the request failed")
        started = time.perf_counter()
        fill_crops(image, plan, out)
        return time.perf_counter() - started

    async def prepare(self, images: list[bytes], crops: int) -> tuple[np.ndarray, float, float]:
        """Decode and crop every image off the event loop: (uint8 [images x crops, 224, 224, 3],
        decode seconds, crop seconds), the seconds summed over images.

        When one image fails (or the request is cancelled) the work not yet started is dropped and
        the work running is waited for, so the request's reservation is released only once the
        pool holds nothing of it: a garbage first image leaves no 15 decodes queued.
        """
        failed = threading.Event()
        submitted: list[Future] = []
        holds: list[contextlib.ExitStack] = []  # closed at the end whatever happened: the budget never leaks

        def pool(fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
            future = self._executor.submit(fn, *args, failed)
            submitted.append(future)
            return asyncio.wrap_future(future)

        def whole(data: bytes, failed: threading.Event) -> tuple[np.ndarray, float, float]:
            image, decode_s, held = self._open(data, crops, failed)
            with held:
                plan = crop_plan(image.width, image.height, crops)
                out = np.empty((len(plan), CROP, CROP, 3), dtype=np.uint8)
                return out, decode_s, self._fill(image, plan, out, failed)

        def opened(data: bytes, failed: threading.Event) -> tuple[Image.Image, float, contextlib.ExitStack]:
            image, decode_s, held = self._open(data, crops, failed)
            holds.append(held)
            return image, decode_s, held

        async def one(data: bytes) -> tuple[np.ndarray, float, float]:
            if crops <= 10:  # one job: a second trip through the pool would cost more than it saves
                out, decode_s, crops_s = await pool(whole, data)
            else:  # the 144 crops' four scales in parallel: as one thread they are most of a GPU request
                image, decode_s, held = await pool(opened, data)
                with held:
                    plan = crop_plan(image.width, image.height, crops)
                    out = np.empty((len(plan), CROP, CROP, 3), dtype=np.uint8)
                    scales = [pool(self._fill, image, plan[g], out[g]) for g in scale_groups(plan)]
                    crops_s = sum(await asyncio.gather(*scales))
            metrics.PREPROCESS_DURATION.labels(str(crops)).observe(decode_s + crops_s)
            self.prep_cost.observe(crops, decode_s + crops_s)
            return out, decode_s, crops_s

        with self._decoding_lock:
            self._decoding[crops] += len(images)
        tasks = [asyncio.ensure_future(one(d)) for d in images]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            failed.set()
            for task in tasks:  # no more submissions; queued work is cancelled with its future
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            running = [f for f in submitted if not f.cancel()]
            await asyncio.gather(*map(asyncio.wrap_future, running), return_exceptions=True)
            raise
        finally:
            for held in holds:
                held.close()
            with self._decoding_lock:
                self._decoding[crops] -= len(images)
        rows = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        return rows, sum(p[1] for p in parts), sum(p[2] for p in parts)

    async def probabilities(
        self, images: list[bytes] | np.ndarray, crops: int, members: list[str], *, deadline: float | None,
        reservation: Reservation | None = None,
    ) -> Probabilities:
        """Encoded images (decoded and cropped here) or ready rows [images, 224, 224, 3] on `members`:
        mean over each image's crops, then over members. `reservation`: the request was admitted
        already (`admit`), else it is admitted here.

        Admission comes before decoding: past capacity the request is refused (503), and one that
        could never meet its deadline (422), before it costs any work.
        """
        started = time.perf_counter()
        encoded = not isinstance(images, np.ndarray)
        decode_s = crops_s = 0.0
        if reservation is None:
            prepare_s = self.prepare_estimate(len(images), crops) if encoded else 0.0
            reservation = self.ensemble.admit(len(images) * crops, members, deadline=deadline, prepare_s=prepare_s)
        with reservation as admission:
            if encoded:
                rows, decode_s, crops_s = await self.prepare(images, crops)
            else:
                rows = images
            ready_s = time.perf_counter() - started
            if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                raise DeadlineExceeded("the request's deadline passed before it was queued")
            results = await admission.run(rows, deadline=deadline)
        return Probabilities(
            average([r.outputs for r in results], len(images)), members, ready_s, results, decode_s, crops_s
        )

    async def classify(
        self, images: list[bytes], *, crops: int, members: list[str], topk: int, deadline: float | None,
        reservation: Reservation | None = None,
    ) -> Classification:
        started = time.perf_counter()
        probs = await self.probabilities(images, crops, members, deadline=deadline, reservation=reservation)
        timings = {
            "decode": probs.decode_s * 1000,
            "crops": probs.crops_s * 1000,
            "preprocess": probs.preprocess_s * 1000,
            "queue": probs.queue_s * 1000,
            "copy_in": sum(r.copy_in_s for r in probs.results) * 1000,
            "compute": sum(r.compute_s for r in probs.results) * 1000,
            "copy_out": sum(r.copy_out_s for r in probs.results) * 1000,
            "inference": probs.inference_s * 1000,
            "total": (time.perf_counter() - started) * 1000,
            "runs": [
                {"model": m, "batches": r.batches, "queue": r.queue_s * 1000, "copy_in": r.copy_in_s * 1000,
                 "compute": r.compute_s * 1000, "copy_out": r.copy_out_s * 1000, "inference": r.run_s * 1000}
                for m, r in zip(members, probs.results, strict=True)
            ],
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
            self.ensemble, self._executor, images, order, walk, rule=rule, adaptive=adaptive, partial=partial,
            deadline=deadline, max_pixels=self.max_pixels, max_aspect=self.max_aspect, limits=self.limits,
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
