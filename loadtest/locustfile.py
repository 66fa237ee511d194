"""Locust users for teams that run Locust: the same images, request mix and wire format as
`python -m loadtest run`, configured by environment variables.

    LOADTEST_MIX=1x1:0.9,10x1:0.09,144x7:0.01 \\
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 16 -r 4 -t 60s

LOADTEST_MIX (default 1x1), LOADTEST_IMAGES (a folder; default ../shared/data/imagenet-samples, else
generated JPEGs), LOADTEST_PROTOCOL (v1 | v2), LOADTEST_V2_MODEL (default googlenet).
Locust's users are closed loops timed from the actual send: for latency under a fixed arrival rate,
without coordinated omission, use `python -m loadtest run --rate` (docs/loadtest.md).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import HttpUser, constant, task

from loadtest.images import load_corpus
from loadtest.mix import Mix
from loadtest.protocol import RequestBook

MIX = Mix.parse(os.environ.get("LOADTEST_MIX", "1x1"))
_folder = os.environ.get("LOADTEST_IMAGES")
CORPUS = load_corpus(Path(_folder) if _folder else None)
BOOK = RequestBook(CORPUS.images, MIX.modes, os.environ.get("LOADTEST_PROTOCOL", "v1"),  # type: ignore[arg-type]
                   os.environ.get("LOADTEST_V2_MODEL", "googlenet"))


class ClassifyUser(HttpUser):
    wait_time = constant(0)  # back to back, as `run --concurrency`: Locust's -u is the client count

    @task
    def classify(self) -> None:
        mode = MIX.choose(random)  # the module-level generator: each gevent user draws from it
        request = BOOK.get(mode, random.randrange(1 << 30))
        # `name` groups Locust's statistics by mode rather than by URL.
        self.client.post(request.path, data=request.body, headers=request.headers, name=mode.name)
