"""One measured phase of a benchmark: a load run against a server process, tagged with where the
machine's CPU went meanwhile (server, generator, other work)."""

from __future__ import annotations

import sys
from typing import Any

from loadtest import machine
from loadtest.generator import LoadSpec, run_load_sync
from loadtest.images import Corpus
from loadtest.mix import Mix
from loadtest.servers import ServerProcess


class Phases:
    def __init__(self, server: ServerProcess, corpus: Corpus, *, phase_s: float, warmup_s: float,
                 progress: bool = True, label: str = "service") -> None:
        self.server, self.corpus, self.label = server, corpus, label
        self.phase_s, self.warmup_s, self.progress = phase_s, warmup_s, progress

    def run(self, name: str, mode: str, **load: Any) -> dict[str, Any]:
        """Load `mode` (a mix) with `load` (LoadSpec fields); phase length and warm-up by default."""
        load.setdefault("duration_s", self.phase_s)
        load.setdefault("warmup_s", self.warmup_s)
        spec = LoadSpec(url=self.server.url, mix=Mix.parse(mode), **load)
        watch = machine.CpuWatch(self.server.cpu_seconds)
        result = run_load_sync(spec, self.corpus)
        result["cpu"] = watch.done()
        result["phase"] = name
        if self.progress:
            lat, cpu = result["latency_ms"], result["cpu"]
            print(f"  {self.label:8s} {name:24s} {result['throughput_rps']:9.2f} img/s  p50 {lat.get('p50', 0):8.1f}"
                  f"  p99 {lat.get('p99', 0):8.1f} ms  errors {result['requests'] - result['ok']:4d}"
                  f"  cores: server {cpu['server_cores']:.2f} generator {cpu['generator_cores']:.2f}"
                  f" other {cpu['other_cores']:.2f}", file=sys.stderr, flush=True)
        return result
