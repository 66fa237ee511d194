"""The try-it page in a real headless Chromium (Debian's package, driven by Playwright), against
the real server: upload and drop real JPEGs, switch crops and ensemble, see rejections as JSON.

Chromium comes from apt (installed here when /usr/bin/chromium is missing); Playwright never
downloads a browser. The page's screenshot goes to test-artifacts/, and to docs/web-page.png
when UPDATE_DOCS_SCREENSHOT=1 (so an ordinary test run leaves the tree clean).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ROOT, SHARED_DATA, LiveServer, sample_jpegs, serve
from tests.tiny_models import write_repository

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 30_000


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def ensure_chromium() -> Path:
    """Debian's chromium (and a metric-compatible font) via apt-get, once; skip where impossible."""
    if CHROMIUM.exists():
        return CHROMIUM
    if not shutil.which("apt-get"):
        pytest.skip("no /usr/bin/chromium and no apt-get to install it")
    if os.geteuid() != 0:
        pytest.skip("no /usr/bin/chromium; install it with: sudo apt-get install chromium")
    install = ("install", "-y", "--no-install-recommends", "chromium", "fonts-liberation")
    proc = _apt_get(*install)
    if proc.returncode != 0:  # a stale package index is the usual cause
        _apt_get("update")
        proc = _apt_get(*install)
    if proc.returncode != 0 or not CHROMIUM.exists():
        pytest.skip(f"apt-get could not install chromium: {proc.stderr.strip()[-400:]}")
    return CHROMIUM


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Tiny models, but with the real ILSVRC class names where the shared data has them."""
    repo = write_repository(tmp_path_factory.mktemp("web") / "model_repository", members=3)
    classes = SHARED_DATA / "imagenet-classes.tsv"
    if classes.is_file():
        shutil.copyfile(classes, repo / "labels.tsv")
    with serve(repo, max_batch_size=8, instances=2) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = ensure_chromium()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(executable), headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: object, page_server: LiveServer) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1200, "height": 860}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.requests = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.goto(page_server.url + "/")
    page.wait_for_selector("#server.ok")  # the page read GET /v1/models
    yield page
    context.close()


def rows(page: object) -> list[tuple[str, str]]:
    # Locator assertions, not wait_for_function: the page's CSP forbids the eval that polling uses.
    expect(page.locator("body")).not_to_have_class(re.compile("busy"))
    expect(page.locator("#results .row")).to_have_count(5)
    return [
        (r.locator(".label").inner_text(), r.locator(".value").inner_text())
        for r in page.locator("#results .row").all()
    ]


def test_uploading_a_real_jpeg_shows_five_labelled_bars_and_timings(
    page: object, page_server: LiveServer
) -> None:
    jpeg = next(p for p in sample_jpegs() if "tench" in p.name)
    page.set_input_files("#file", str(jpeg))
    top = rows(page)
    assert len(top) == 5 and all(label and value.endswith("%") for label, value in top)
    assert page.locator("#evaluations").inner_text() == "1 (1 crop × 1)"
    assert page.locator("#t-total").inner_text().endswith(" ms")
    assert page.locator("#untrained").is_visible()  # tiny models are random-init: the page says so

    page.locator("label:has(input[name=crops][value='10'])").click()
    page.locator("label:has(input[name=ensemble][value='true'])").click()
    expect(page.locator("#evaluations")).to_have_text("30 (10 crops × 3)")
    assert len(rows(page)) == 5
    assert page.locator("#meta").inner_text().startswith("tiny-0, tiny-1, tiny-2")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "web-page.png", ROOT / "docs" / "web-page.png")
    # works offline: nothing but the service itself and the preview's blob: URL
    assert all(url.removeprefix("blob:").startswith(page_server.url) for url in page.requests), page.requests


def test_adaptive_choices_show_where_the_image_stopped(page: object) -> None:
    page.set_input_files("#file", str(sample_jpegs()[2]))
    rows(page)
    assert page.locator("#walk-row").is_hidden()  # a fixed mode has no walk to show
    page.locator("label:has(input[name=crops][value='adaptive'])").click()
    page.locator("label:has(input[name=ensemble][value='adaptive'])").click()
    expect(page.locator("#walk-row")).to_be_visible()
    assert len(rows(page)) == 5
    walk = re.fullmatch(r"(\d+)x(\d+) · (confident|last rung|no time)", page.locator("#walk").inner_text())
    assert walk, page.locator("#walk").inner_text()
    crops, members = int(walk[1]), int(walk[2])
    assert crops in (1, 10, 144) and 1 <= members <= 3
    assert page.locator("#evaluations").inner_text() == str(crops * members)  # a walk never repeats work


def test_dropping_an_image_classifies_it(page: object) -> None:
    jpeg = sample_jpegs()[1].read_bytes()
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "dropped.jpeg", { type: "image/jpeg" }));
            return data;
        }""",
        base64.b64encode(jpeg).decode(),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    assert len(rows(page)) == 5
    assert page.locator("#file-name").inner_text().startswith("dropped.jpeg")


@pytest.mark.parametrize(
    ("name", "mime", "data", "status", "code"),
    [
        ("notes.txt", "text/plain", b"not a picture", "415", "unsupported_media_type"),
        ("broken.jpg", "image/jpeg", b"\xff\xd8\xff\xe0 truncated", "422", "invalid_image"),
    ],
)
def test_rejected_files_show_the_json_error(
    page: object, name: str, mime: str, data: bytes, status: str, code: str
) -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error-title").inner_text() == f"Rejected: HTTP {status} · {code}"
    assert f'"code": "{code}"' in page.locator("#error-json").inner_text()
    assert page.locator("#results .row").count() == 0


def test_the_page_and_its_files_are_served_with_a_strict_policy(page_server: LiveServer) -> None:
    with page_server.client() as client:
        index = client.get("/")
        script = client.get("/static/app.js")
        missing = client.get("/static/../app.py")
        unknown = client.get("/static/secret.txt")
    assert (
        index.headers["content-type"].startswith("text/html")
        and "default-src 'self'" in index.headers["content-security-policy"]
    )
    assert script.headers["content-type"].startswith("text/javascript") and "classify" in script.text
    assert missing.status_code == 404 and unknown.status_code == 404 and unknown.json()["error"]
