"""The GPU check's result.json as the Markdown that docs/benchmarks.md's GPU section is made of."""

from __future__ import annotations

from typing import Any

STAGES = ("total", "decode", "crops", "preprocess", "queue", "copy_in", "compute", "copy_out", "inference")


def _f(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def _ceiling(result: dict[str, Any]) -> list[str]:
    variants = result["ceiling"]
    batches = [p["batch"] for p in variants[0]["points"]]
    lines = ["| runtime variant | warm-up s | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|---:|" + "---:|" * len(batches)]
    for v in variants:
        name = f"graphs {'on' if v['graphs'] else 'off'}, search {v['search']}" + (" (failed)" if "error" in v else "")
        cells = " | ".join(f"{p['images_per_s']:,.0f} ({p['ms_per_batch']:.2f} ms)" for p in v["points"])
        lines.append(f"| {name} | {v['warm_s']:.1f} | {cells} |")
    best = result["best"]
    threads = "2 lanes" if result["provider"] == "cuda" else "a thread per core"
    lines += ["", f"Images/s (ms per batch) with the service's own runtime, {threads} at a time. "
              f"Ceiling of the service's variant: {best['images_per_s']:,.0f} img/s at batch "
              f"{best['batch']}. Decode + crop, 1 crop: {result['decode_ms']:.2f} ms per image per core = "
              f"{result['decode_budget_ips']:,.0f} img/s on all cores."]
    return lines


def _alone(result: dict[str, Any]) -> list[str]:
    lines = ["| mode | n | " + " | ".join(STAGES) + " |", "|---|---:|" + "---:|" * len(STAGES)]
    for name, a in result["alone"].items():
        lines.append(f"| {name} | {a['n']} | " + " | ".join(_f(a["p50_ms"].get(s), ".2f") for s in STAGES) + " |")
    return lines


def _correctness(result: dict[str, Any]) -> list[str]:
    lines = ["| mode | images | errors | max abs diff | max diff / range | top-1 equal (clear margin) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, c in result["correctness"].items():
        lines.append(f"| {name} | {c['n']} | {c['errors']} | {c['max_abs']:.2e} | {c['max_rel']:.2e} "
                     f"| {c['top1_agree']}/{c['top1_clear']} |")
    return lines


def _load(result: dict[str, Any]) -> list[str]:
    lines = [("| mode | clients | img/s | evaluations/s | of ceiling | of own limit | bound by | p50 ms | p99 ms "
              "| mean batch | errors | cores: server / generator / other |"),
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    rows = list(result["service"].items())
    if "baseline_1x1" in result:
        rows.append(("1x1 naive baseline", result["baseline_1x1"]))
    for name, r in rows:
        c = r["cpu"]
        batch = "-" if r["mean_batch_rows"] is None else f"{r['mean_batch_rows']:.1f}"
        lines.append(
            f"| {name} | {r['concurrency']} | {r['images_per_s']:,.1f} | {r['evaluations_per_s']:,.0f} "
            f"| {r['of_ceiling']:.0%} | {r['of_limit']:.0%} | {r['bound']} | {r['p50_ms'] or 0:.1f} "
            f"| {r['p99_ms'] or 0:.1f} | {batch} | {r['errors']} "
            f"| {c['server_cores']:.2f} / {c['generator_cores']:.2f} / {c['other_cores']:.2f} |")
    if "baseline_1x1" in result and "1x1" in result["service"]:
        ratio = result["service"]["1x1"]["images_per_s"] / max(result["baseline_1x1"]["images_per_s"], 1e-9)
        clients = result["baseline_1x1"]["concurrency"]
        lines += ["", f"Service / naive baseline, 1 crop, {clients} clients: {ratio:.2f}x"]
    return lines


def render(result: dict[str, Any]) -> str:
    m, memory, b = result["machine"], result["memory"], result["burst"]
    gpu = result.get("gpu") or {}
    peaks = ", ".join(f"{k} {_f(v, '.0f')}" for k, v in memory["peaks_mib"].items())
    lines = [
        f"## GPU check: {m['date']}, {result['provider'].upper()} {result['precision']}, {m['cores']} cores, "
        f"commit {m['commit']}",
        "",
        f"GPU: {gpu.get('name', '-')}, driver {gpu.get('driver', '-')}; ONNX Runtime {result.get('onnxruntime', '-')}; "
        f"service flags: `{' '.join(result['service_args']) or '(defaults)'}`.",
        "",
        "### Model ceiling by batch size",
        "",
        *_ceiling(result),
        "",
        "### Start-up, memory, burst",
        "",
        f"- Ready {result['ready_s']:.1f} s after launch.",
        f"- Device memory held by the service (MiB, peak per phase): {peaks}. Peak {_f(memory['peak_mib'], '.0f')} "
        f"MiB; the modes' peaks spread {_f(memory['modes_spread'], '.3f')}x (max / min).",
        f"- CUDA graph fallbacks: {result['graph_fallbacks']:.0f}.",
        f"- Burst of {b['count']} light requests ({', '.join(b['modes'])}) on the idle service: statuses "
        f"{b['statuses']}; client p50 {b['client_ms']['p50']:.0f} ms, p99 {b['client_ms']['p99']:.0f} ms.",
        f"- Actual over estimated completion: burst p10/p50/p90 {_f(b['estimates']['p10'], '.2f')} / "
        f"{_f(b['estimates']['p50'], '.2f')} / {_f(b['estimates']['p90'], '.2f')}; under load "
        f"{_f(result['estimates_under_load']['p10'], '.2f')} / {_f(result['estimates_under_load']['p50'], '.2f')} / "
        f"{_f(result['estimates_under_load']['p90'], '.2f')}.",
        "",
        "### Each mode alone (server-side timings_ms, p50)",
        "",
        *_alone(result),
        "",
        "### Answers against the CPU provider in fp32 (whole distributions)",
        "",
        *_correctness(result),
        "",
        "### Each mode under load",
        "",
        *_load(result),
    ]
    return "\n".join(lines) + "\n"
