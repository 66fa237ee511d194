"""GPU utilisation and memory as Prometheus gauges, read from NVML at scrape time.

Without a GPU (no NVML library, no driver, no device) the series are absent, not zero: a
dashboard must not show an idle GPU that does not exist. `pynvml` comes from the pip package
`nvidia-ml-py` and is imported lazily, only when `install` runs. Labels are bounded: one
series per device, `gpu` = NVML index and `uuid` (as Triton's `gpu_uuid`, docs/architecture.md 8).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

UTILIZATION = "googlenet_gpu_utilization_ratio"
MEMORY_USED = "googlenet_gpu_memory_used_bytes"
MEMORY_TOTAL = "googlenet_gpu_memory_total_bytes"
METRIC_NAMES = (UTILIZATION, MEMORY_USED, MEMORY_TOTAL)
_LABELS = ["gpu", "uuid"]


class NvmlCollector(Collector):
    """Reads every visible device on each scrape; a device that fails to answer is skipped."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml  # the initialised `pynvml` module

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # collect() talks to the driver: never at registration time

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nvml = self.nvml
        util = GaugeMetricFamily(
            UTILIZATION, "GPU busy fraction over NVML's last sample period (0-1).", labels=_LABELS
        )
        used = GaugeMetricFamily(MEMORY_USED, "GPU memory in use, all processes.", labels=_LABELS)
        total = GaugeMetricFamily(MEMORY_TOTAL, "GPU memory installed.", labels=_LABELS)
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            log.warning("NVML device count failed: %s", exc)
            return
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = nvml.nvmlDeviceGetUUID(handle)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            except nvml.NVMLError as exc:
                log.warning("NVML read of GPU %d failed: %s", index, exc)
                continue
            labels = [str(index), uuid.decode() if isinstance(uuid, bytes) else str(uuid)]
            util.add_metric(labels, rates.gpu / 100)
            used.add_metric(labels, float(memory.used))
            total.add_metric(labels, float(memory.total))
        for family in (util, used, total):
            if family.samples:
                yield family


_installed: dict[int, NvmlCollector] = {}


def install(registry: CollectorRegistry = REGISTRY) -> bool:
    """Register the GPU gauges when NVML answers with at least one device; once per registry.

    Returns whether GPU metrics are exported. Any failure means "no GPU here", never an error.
    """
    if id(registry) in _installed:
        return True
    try:
        import pynvml  # nvidia-ml-py: lazily, as most CPU installs have no NVML library
    except ImportError:
        log.info("GPU metrics off: nvidia-ml-py is not installed")
        return False
    try:
        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() == 0:
            pynvml.nvmlShutdown()
            return False
    except pynvml.NVMLError as exc:
        log.info("GPU metrics off: %s", exc)
        return False
    collector = NvmlCollector(pynvml)
    registry.register(collector)
    _installed[id(registry)] = collector
    return True



_nvml: list[Any] = []  # the initialised pynvml module, once per process


def _nvml_module() -> Any | None:
    if not _nvml:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # no library, no driver, no device
            return None
        _nvml.append(pynvml)
    return _nvml[0]


def process_memory_bytes(pid: int, device_index: int = 0) -> int | None:
    """Device memory `pid` holds on GPU `device_index` (NVML), or None where NVML cannot tell."""
    nvml = _nvml_module()
    if nvml is None:
        return None
    try:
        processes = nvml.nvmlDeviceGetComputeRunningProcesses(nvml.nvmlDeviceGetHandleByIndex(device_index))
    except nvml.NVMLError:
        return None
    used = [p.usedGpuMemory for p in processes if p.pid == pid and p.usedGpuMemory is not None]
    return sum(used) if used else None


def device_info(device_index: int = 0) -> dict[str, str] | None:
    """Name and driver version of GPU `device_index`, or None without one."""
    nvml = _nvml_module()
    if nvml is None:
        return None
    try:
        name = nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(device_index))
        driver = nvml.nvmlSystemGetDriverVersion()
    except nvml.NVMLError:
        return None
    as_text = [v.decode() if isinstance(v, bytes) else str(v) for v in (name, driver)]
    return {"name": as_text[0], "driver": as_text[1]}
