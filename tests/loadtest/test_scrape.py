"""/metrics deltas and bucket quantiles, against the real service's metrics text."""

from __future__ import annotations

import pytest

from loadtest.scrape import Snapshot, quantile, server_stats
from tests.conftest import make_image


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    buckets = [(1.0, 0.0), (2.0, 10.0), (4.0, 20.0), (float("inf"), 20.0)]
    assert quantile(buckets, 0.5) == pytest.approx(2.0)
    assert quantile(buckets, 0.75) == pytest.approx(3.0)
    assert quantile([(1.0, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert quantile([(1.0, 1.0), (float("inf"), 4.0)], 0.99) == 1.0  # past the last bound: that bound


def test_server_stats_are_the_difference_of_two_scrapes(server) -> None:
    with server.client() as client:
        before = Snapshot.parse(client.get("/metrics").text)
        for seed in range(3):
            answer = client.post("/v1/classify?crops=10", content=make_image(seed=seed),
                                 headers={"content-type": "image/jpeg"})
            assert answer.status_code == 200
        bad = client.post("/v1/classify", content=b"not an image", headers={"content-type": "image/jpeg"})
        assert bad.status_code == 422
        after = Snapshot.parse(client.get("/metrics").text)
    stats = server_stats(before, after)
    assert stats["evaluated_rows"] == 30  # 3 images x 10 crops x 1 model, nothing else ran
    assert stats["requests_by_status"].get("200") == 3 and stats["requests_by_status"].get("422") == 1
    assert stats["rejections"] == {"bad_input": 1.0}
    assert 1 <= stats["mean_batch_rows"] <= 8  # the fixture's max_batch_size
    assert stats["queue_wait_ms"]["mean"] is not None and stats["preprocess_ms_per_image"] > 0

