"""Dependency audit: pip-audit over what the serving image installs (the core dependencies of
googlenet-serving and everything they pull in), pinned to the versions installed here.

    python scripts/audit.py            # exit 0: clean; 1: a known vulnerability; 3: the registry gave no data

Exit 3 means the vulnerability data could not be had (offline, or a registry mirror without
PyPI's per-version JSON API), so nothing was audited: say so, never "clean". docs/reliability.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DISTRIBUTION = "googlenet-serving"
NO_DATA = 3


def serving_closure(distribution: str = DISTRIBUTION) -> dict[str, str]:
    """name -> installed version of every package the service needs at run time (no extras)."""
    env = default_environment() | {"extra": ""}
    pending = [Requirement(r) for r in metadata.requires(distribution) or []]
    found: dict[str, str] = {}
    while pending:
        req = pending.pop()
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        if name in found:
            continue
        try:
            found[name] = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            continue  # an optional platform variant not installed here (onnxruntime vs onnxruntime-gpu)
        pending += [Requirement(r) for r in metadata.requires(req.name) or []]
    return found


def audit(packages: dict[str, str]) -> tuple[int, dict]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("".join(f"{name}=={version}\n" for name, version in sorted(packages.items())))
    result = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--requirement", f.name, "--no-deps", "--disable-pip",
         "--format", "json", "--progress-spinner", "off"],
        capture_output=True, text=True, timeout=600,
    )
    Path(f.name).unlink()
    try:
        report = json.loads(result.stdout or "{}")
    except ValueError:
        report = {}
    deps = report.get("dependencies", [])
    audited = [d for d in deps if "skip_reason" not in d]
    if not audited:
        return NO_DATA, {"error": (result.stderr or "no dependency could be audited")[-2000:], "dependencies": deps}
    vulnerable = [d for d in audited if d.get("vulns")]
    return (1 if vulnerable else 0), {"audited": len(audited), "skipped": len(deps) - len(audited),
                                      "vulnerable": vulnerable}


def main() -> int:
    packages = serving_closure()
    code, report = audit(packages)
    if code == NO_DATA:
        print(f"pip-audit: no vulnerability data for any of {len(packages)} packages: NOT audited")
        print(re.sub(r"\s+", " ", str(report["error"]))[:500])
    else:
        print(f"pip-audit: {report['audited']} serving packages audited, {report['skipped']} skipped, "
              f"{len(report['vulnerable'])} with known vulnerabilities")
        for dep in report["vulnerable"]:
            print(f"  {dep['name']} {dep['version']}: {', '.join(v['id'] for v in dep['vulns'])}")
    return code


if __name__ == "__main__":
    sys.exit(main())
