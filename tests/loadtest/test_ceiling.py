"""loadtest/ceiling.py: the model alone and preprocessing alone, the limits a server is measured against."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from loadtest.ceiling import (
    INPUT_SHAPE,
    Limit,
    ModelPoint,
    cpu_session,
    limit_for,
    measure_streams,
    model_ceiling_cpu,
    preprocess_cost,
)
from service.errors import ImageTooLarge
from tests.conftest import make_image


@pytest.fixture(scope="module")
def model_path(tiny_repo: Path) -> Path:
    return tiny_repo / "tiny-0" / "1" / "model.onnx"


class Calls:
    """A `run(rows)` that counts its calls and remembers what it was handed, per thread."""

    def __init__(self) -> None:
        self.lock, self.count, self.shapes, self.threads = threading.Lock(), 0, set(), set()

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        with self.lock:
            self.count += 1
            self.shapes.add((rows.shape, rows.dtype))
            self.threads.add(threading.get_ident())
        return rows[:, 0, 0, 0]


def test_every_stream_warms_up_then_runs_at_least_its_minimum() -> None:
    run = Calls()
    measured = measure_streams(run, batch=3, streams=2, duration_s=0.0, min_batches=4)
    images_per_s, cores, ms_per_batch = measured
    assert run.count == 2 + 2 * 4  # one warm-up per stream, then min_batches each (the deadline has passed)
    assert run.shapes == {((3, *INPUT_SHAPE), np.dtype(np.uint8))}
    assert len(run.threads) >= 2  # the measured calls ran on the streams' own threads
    assert images_per_s > 0 and cores >= 0 and ms_per_batch > 0
    # images/s = batches x batch / wall and ms/batch = wall x streams / batches: the product is fixed.
    assert images_per_s * ms_per_batch / 1000 == pytest.approx(3 * 2)


def test_the_session_has_the_services_cpu_options(model_path: Path) -> None:
    session = cpu_session(model_path, intra_op_threads=2)
    assert session.get_providers() == ["CPUExecutionProvider"]
    options = session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    rows = np.zeros((2, *INPUT_SHAPE), np.uint8)
    (probabilities,) = session.run(["probabilities"], {"image": rows})
    assert probabilities.shape == (2, 1000)


def test_the_model_ceiling_measures_both_threading_layouts(model_path: Path) -> None:
    points = model_ceiling_cpu(model_path, cores=2, batches=(1, 2), duration_s=0.0)
    layouts = [(p.streams, p.intra_op_threads, p.batch) for p in points]
    assert layouts == [(1, 2, 1), (1, 2, 2), (2, 1, 1), (2, 1, 2)]
    assert all(p.images_per_s > 0 and p.ms_per_batch > 0 for p in points)


def test_on_one_core_the_two_layouts_are_one(model_path: Path) -> None:
    points = model_ceiling_cpu(model_path, cores=1, batches=(1,), duration_s=0.0)
    assert [(p.streams, p.intra_op_threads) for p in points] == [(1, 1)]


def test_a_point_is_a_plain_record() -> None:
    fields = {"batch": 4, "streams": 2, "intra_op_threads": 1, "images_per_s": 80.0, "cpu_cores": 1.9,
              "ms_per_batch": 100.0}
    assert ModelPoint(**fields).as_dict() == fields


def test_preprocessing_cost_is_cpu_seconds_per_image() -> None:
    images = [make_image(320, 240, seed=i) for i in range(3)]
    assert preprocess_cost(images, 1, max_images=2) > 0


def test_preprocessing_cost_keeps_the_services_pixel_limit() -> None:
    with pytest.raises(ImageTooLarge):
        preprocess_cost([make_image(320, 240)], 1, max_images=1, max_pixels=1000)


def test_the_limit_shares_the_cores_between_the_model_and_preprocessing() -> None:
    # 10 evaluations at 100 images/s on 2 cores: 0.2 core-s of model per image, plus 0.05 of decoding.
    limit = limit_for("10x1", 10, best_images_per_s=100.0, cores=2, preprocess_s=0.05)
    assert limit == Limit("10x1", 10, pytest.approx(0.2), 0.05, pytest.approx(2 / 0.25))


def test_more_evaluations_lower_the_limit() -> None:
    one = limit_for("1x1", 1, best_images_per_s=100.0, cores=2, preprocess_s=0.01)
    many = limit_for("144x7", 1008, best_images_per_s=100.0, cores=2, preprocess_s=0.01)
    assert many.images_per_s < one.images_per_s / 500
