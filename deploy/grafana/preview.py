"""Plot the Grafana dashboard's own PromQL queries, evaluated by a real Prometheus, into one PNG.

This is not Grafana: it is a matplotlib rendering of the same queries (deploy/grafana/dashboards/
googlenet.json) over a time range, for docs/dashboard.png where no Grafana runs (docs/deployment.md).

    python deploy/grafana/preview.py --prometheus http://127.0.0.1:9090 --minutes 5 \
        --output docs/dashboard.png
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import httpx

DASHBOARD = Path(__file__).resolve().parent / "dashboards" / "googlenet.json"


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text())


def expand(expr: str, rate_interval: str) -> str:
    """Grafana's variables as Grafana would fill them: $__rate_interval >= 4 scrape intervals."""
    return expr.replace("$__rate_interval", rate_interval)


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    return [(p, p.get("targets", [])) for p in dashboard["panels"]]


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
        timeout=30,
    )
    body = response.json()
    if body.get("status") != "success":
        raise ValueError(f"{expr}: {body.get('error', response.text)}")
    return body["data"]["result"]


def _legend(fmt: str, labels: dict[str, str]) -> str:
    out = fmt
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out or ",".join(f"{k}={v}" for k, v in labels.items())


def render(
    prometheus: str,
    output: Path,
    *,
    start: float,
    end: float,
    rate_interval: str = "30s",
    dashboard: dict[str, Any] | None = None,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = dashboard or load_dashboard()
    panels = [(p, t) for p, t in panel_queries(dashboard) if p["type"] == "timeseries"]
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(15, 3.1 * rows), squeeze=False)
    step = max(1.0, (end - start) / 200)
    for ax, (panel, targets) in zip(axes.flat, panels, strict=False):
        drawn = 0
        for target in targets:
            for series in query_range(prometheus, expand(target["expr"], rate_interval), start, end, step):
                xs = [float(t) - start for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(
                    xs, ys, label=_legend(target.get("legendFormat", ""), series["metric"]), linewidth=1.3
                )
                drawn += 1
        ax.set_title(panel["title"], fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("seconds", fontsize=7)
        ax.set_ylabel(panel["fieldConfig"]["defaults"].get("unit", ""), fontsize=7)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=6, loc="upper left", ncol=2)
        else:
            ax.text(
                0.5,
                0.5,
                "no data (series absent)",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=9,
                color="gray",
            )
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        f"{dashboard['title']}: the dashboard's PromQL evaluated by Prometheus (matplotlib, not Grafana)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=90)
    plt.close(fig)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=5.0, help="time range, ending now")
    parser.add_argument("--rate-interval", default="30s", help="what $__rate_interval becomes")
    parser.add_argument("--output", type=Path, default=Path("docs/dashboard.png"))
    args = parser.parse_args()
    end = time.time()
    print(
        render(
            args.prometheus,
            args.output,
            start=end - args.minutes * 60,
            end=end,
            rate_interval=args.rate_interval,
        )
    )


if __name__ == "__main__":
    main()
