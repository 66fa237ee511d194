"""docs/benchmarks.md from a bench report: goals with verdicts, the tables of (a)-(d), plots, and
the hand-written notes kept between runs (the text between the two NOTES markers survives)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from loadtest import goals, plots
from loadtest.machine import REPO_ROOT
from loadtest.recording import PER_SECOND, write_json

NOTES_START, NOTES_END = "<!-- notes: kept across runs -->", "<!-- end of notes -->"


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _shown_command(command: str) -> str:
    return " ".join(_shown(word) if word.startswith("/") else word for word in command.split())


def _shown(path: str) -> str:
    """A path as the reader's checkout sees it: relative to the repository, never this machine's."""
    p = Path(path)
    if not p.is_absolute():
        return path
    for base, prefix in ((REPO_ROOT, ""), (REPO_ROOT.parent, "../")):
        try:
            return prefix + str(p.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return p.name


def _old_notes(path: Path) -> str:
    if path.exists():
        text = path.read_text()
        if NOTES_START in text and NOTES_END in text:
            return text.split(NOTES_START, 1)[1].split(NOTES_END, 1)[0].strip("\n")
    return "_No notes yet: add the analysis of this run here; `bench` keeps this section._"


def _cores(result: dict[str, Any]) -> str:
    c = result["cpu"]
    return f"{c['server_cores']:.2f} / {c['generator_cores']:.2f} / {c['other_cores']:.2f}"


def _one_crop_table(report: dict[str, Any]) -> list[str]:
    limit = report["limits"]["1x1"]["images_per_s"]
    service, baseline = report["service"], report.get("baseline")
    lines = [
        ("| concurrency | service img/s | of limit | p50 ms | p99 ms | mean batch | queue wait p50 ms "
         "| baseline img/s | baseline p50 ms | baseline p99 ms | service / baseline "
         "| cores: server / generator / other |"),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c, r in service["closed"].items():
        b = baseline["closed"].get(c) if baseline else None
        server = r.get("server") or {}
        lines.append(
            f"| {c} | {_f(r['throughput_rps'])} | {_pct(r['throughput_rps'] / limit)} "
            f"| {_f(r['latency_ms'].get('p50'))} | {_f(r['latency_ms'].get('p99'))} "
            f"| {_f(server.get('mean_batch_rows'), 2)} | {_f((server.get('queue_wait_ms') or {}).get('p50'))} "
            f"| {_f(b['throughput_rps']) if b else '-'} | {_f(b['latency_ms'].get('p50')) if b else '-'} "
            f"| {_f(b['latency_ms'].get('p99')) if b else '-'} "
            f"| {_f(r['throughput_rps'] / b['throughput_rps'], 2) + 'x' if b and b['throughput_rps'] else '-'} "
            f"| {_cores(r)} |"
        )
    return lines


def _open_loop_rows(report: dict[str, Any]) -> list[str]:
    lines = ["| run | server | offered req/s | answered/s | p50 ms | p99 ms | max ms | errors | latency trend |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for key, title in (("at_70", "70% of capacity"), ("overload", "150% of capacity")):
        for who in ("service", "baseline"):
            r = (report.get(who) or {}).get(key)
            if not r:
                continue
            errors = {k: v for k, v in r["outcomes"].items() if not k.startswith("2")}
            lines.append(
                f"| {title} | {who} | {_f(r['offered_rps'])} | {_f(r['throughput_rps'])} "
                f"| {_f(r['latency_ms'].get('p50'))} | {_f(r['latency_ms'].get('p99'))} "
                f"| {_f(r['latency_ms'].get('max'))} | {json.dumps(errors) if errors else 'none'} "
                f"| {_f(goals.latency_trend(r), 2)}x |"
            )
    return lines


def _modes_table(report: dict[str, Any]) -> list[str]:
    lines = [("| mode (crops x models) | evaluations per image | requests | img/s | evaluations/s | limit img/s "
             "| of limit | p50 s | cores: server / generator / other |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    one = report["service"]["closed"]
    best_one = max(one.values(), key=lambda r: r["throughput_rps"])
    rows = [("1x1", best_one), *report["service"]["modes"].items()]
    for name, r in rows:
        limit = report["limits"][name]
        lines.append(
            f"| {name} | {limit['evaluations']} | {r['ok']} | {_f(r['throughput_rps'], 2)} "
            f"| {_f(r['evaluations_per_s'])} | {_f(limit['images_per_s'], 2)} "
            f"| {_pct(r['throughput_rps'] / limit['images_per_s'])} | {_f(r['latency_ms'].get('p50', 0) / 1000, 2)} "
            f"| {_cores(r)} |"
        )
    return lines


def _model_table(report: dict[str, Any]) -> list[str]:
    lines = ["| layout | batch | img/s | CPU cores used | ms per batch |", "|---|---:|---:|---:|---:|"]
    for p in report["model"]["points"]:
        layout = f"{p['streams']} stream(s) x {p['intra_op_threads']} intra-op thread(s)"
        lines.append(f"| {layout} | {p['batch']} | {_f(p['images_per_s'])} | {_f(p['cpu_cores'], 2)} "
                     f"| {_f(p['ms_per_batch'])} |")
    return lines


def _profile_lines(report: dict[str, Any]) -> list[str]:
    profile = report.get("profile")
    if not profile:
        return ["No profile (py-spy unavailable or `--no-profile`)."]
    lines = [(f"py-spy, {profile['seconds']:g} s at concurrency {profile['concurrency']} (a separate run, "
             "not in the tables). Cores busy per part of the service:"), "",
             "| part | cores |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in profile["cores"].items()]
    lines += ["", "Busiest functions (leaf frames, cores):", ""]
    lines += [f"- `{name}`: {cores:.2f}" for name, cores in profile["top_functions"]]
    return lines


def render(report: dict[str, Any], plots: dict[str, str], notes: str) -> str:
    m, limits = report["machine"], report["limits"]
    one = limits["1x1"]
    repo = report["repository"]
    out = [
        "# Benchmarks",
        "",
        ("Written by `python -m loadtest bench` (docs/loadtest.md); numbers are from one run on the machine "
        "below. Compare ratios, not absolute times: the limit and the baseline were measured in the same run, "
        "the baseline phase by phase with the service."),
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores ({m['simd']}), {m['memory_gib']} GiB, {m['os']}",
        f"- Software: Python {m['python']}, ONNX Runtime {m['onnxruntime']}; commit {m['commit']}",
        f"- Date: {m['date']}; the run took {report['duration_s'] / 60:.1f} min",
        f"- Command: `{_shown_command(report['command'])}`",
        (f"- Model: repository `{repo['name']}`, {repo['members']} members"
        f"{'' if repo['trained'] else ' (random-init weights: speed is the same, answers are noise)'}"),
        f"- Images: {report['images']['count']} from `{_shown(report['images']['source'])}`",
        (f"- Other load on the machine when the run started: {m['other_cores_at_start']:.2f} cores "
        "(each phase's share is in its \"other\" column; more than ~0.1 skews a 2-core benchmark)"),
        "",
        "## Goals",
        "",
        "| goal | measured | met |",
        "|---|---|:---:|",
        *[f"| {g.goal} | {g.measured} | {'yes' if g.met else '**no**'} |" for g in goals.evaluate(report)],
        "",
        "## (a) The model alone, (b) preprocessing alone: the limit",
        "",
        *_model_table(report),
        "",
        f"![model alone by batch size]({plots['model']})",
        "",
        "| crops | preprocessing, ms of one core per image |",
        "|---:|---:|",
        *[f"| {c} | {_f(ms, 2)} |" for c, ms in report["preprocess_ms"].items()],
        "",
        (f"The limit of a mode is the cores over the CPU seconds one image costs: its evaluations at the "
        f"model's best ({_f(report['model']['best']['images_per_s'])} img/s, batch "
        f"{report['model']['best']['batch']}, {report['model']['best']['streams']} stream(s)) plus its "
        f"preprocessing. For 1 crop: {m['cores']} / ({_f(one['model_s_per_image'] * 1000, 2)} + "
        f"{_f(one['preprocess_s_per_image'] * 1000, 2)} ms) = **{_f(one['images_per_s'])} img/s**."),
        "",
        "## (c, d) The service and the naive baseline, 1 crop, closed loop",
        "",
        *_one_crop_table(report),
        "",
        f"![throughput and p99 by concurrency]({plots['concurrency']})",
        "",
        "## Open loop: at 70% of capacity, and past capacity",
        "",
        ("Poisson arrivals, latency from the scheduled send. \"latency trend\": mean latency of the 200s sent in "
        "the last third of the run over those sent in the middle third (1.0 = flat; growing = an unbounded "
        "queue; 503s left out, as they are answered at once)."),
        "",
        *_open_loop_rows(report),
        "",
        f"![latency CDFs]({plots['cdf']})",
        "",
        f"![latency over time past capacity]({plots['overload']})",
        "",
        "## (c) Every mode, as a fraction of its own limit",
        "",
        *_modes_table(report),
        "",
        "## Where the service's time goes",
        "",
        *_profile_lines(report),
        "",
        "## Notes",
        "",
        NOTES_START,
        notes,
        NOTES_END,
        "",
    ]
    return "\n".join(out)


def write(report: dict[str, Any], output: Path, plots_dir: Path) -> None:
    drawn = plots.draw_bench(report, plots_dir)
    relative = {k: _relative(v, output.parent) for k, v in drawn.items()}
    notes = _old_notes(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(report, relative, notes))
    write_json(plots_dir / "results.json", _trimmed(report))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return path.name


def _trimmed(report: dict[str, Any]) -> dict[str, Any]:
    """The report without per-second timelines and CDF steps: the plots carry those."""
    def trim(value: Any) -> Any:
        if isinstance(value, dict):
            shown = {"source": _shown, "command": _shown_command}
            return {k: shown[k](v) if k in shown else trim(v) for k, v in value.items() if k not in PER_SECOND}
        if isinstance(value, list):
            return [trim(v) for v in value]
        return value
    return trim(report)


def write_section(path: Path, command: str, label: str, body: str) -> None:
    """Replace the section `command`/`label` wrote last time in place, or add it at the end of the
    kept notes, so a run of `bench` keeps it."""
    start = f"<!-- {command} {label}: written by python -m loadtest {command} -->"
    end = f"<!-- end of {command} {label} -->"
    section = f"{start}\n{body}\n{end}"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{NOTES_END}\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    elif NOTES_END in text:
        text = text.replace(NOTES_END, section + "\n" + NOTES_END, 1)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
