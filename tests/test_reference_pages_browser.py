"""The reference platform's pages in headless Chromium, behind its token.

A platform started with a token gets three runs over real HTTP: one completed after a
minute and a half of progress calls with a pause in them, one failed whose summary could
not be built, one still pending. Chromium first comes without the token (it must see no
run), then answers the Basic challenge with it, as a person does in the browser's prompt.
Screenshots of each page land in test-artifacts/platform/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from tests.fixtures.browser import Browser
from tests.fixtures.locust import ROOT
from tests.fixtures.platform import PlatformFactory, PlatformServer

pytestmark = pytest.mark.slow

TOKEN = "plat-page-tok-92c4e1-never-shown"
ARTIFACTS = ROOT / "test-artifacts" / "platform"
#: Seconds after the start of each progress call of the completed run: every 10 s, with a
#: silence from 60 s to 110 s (the line must break there).
PROGRESS_AT = [10, 20, 30, 40, 50, 60, 110, 120, 130, 140, 150]
ARGUMENTS = {"model": "gpt-4o <mini>", "batch_size": 32, "gpu_model": "H100", "warm_up": True}
REASON = "thresholds breached: p95_ms < 500 for GET /search: observed 730"
ROW = {"failure_ratio": 0.0, "avg_ms": 120.5, "min_ms": 8.0, "median_ms": 110.0, "bytes": 51200}
SUMMARY = {
    "duration_s": 160.0,
    "users_peak": 50,
    "workers": 0,
    "total": {"requests": 14210, "failures": 91, "failure_ratio": 0.0064, "rps": 88.8},
    "requests": [
        {"method": "GET", "name": "/search", **ROW, "requests": 9800, "rps": 61.25,
         "p90_ms": 240.0, "p95_ms": 310.0, "p99_ms": 690.0, "max_ms": 1210.0},
        {"method": "POST", "name": "/rerank", **ROW, "requests": 4320, "failures": 91,
         "failure_ratio": 0.0211, "rps": 27.0, "p90_ms": 410.0, "p95_ms": 520.0,
         "p99_ms": 980.0, "max_ms": 2300.0},
        {"method": "GET", "name": "/health", "requests": 90, "failures": 0, "rps": 0.56},
    ],
    "errors": [
        {"method": "POST", "name": "/rerank", "error": "HTTPError('503 Server Error')",
         "occurrences": 91}
    ],
    "thresholds": [
        {"criterion": "p95_ms < 500 for GET /search", "observed": 310.0, "limit": 500.0,
         "passed": True, "source": "endpoint 'search' on the platform"},
        {"criterion": "failure_ratio < 0.01", "observed": 0.0064, "limit": 0.01,
         "passed": True, "source": "the command line"},
    ],
}  # fmt: skip


def at(second: int) -> str:
    minutes, seconds = divmod(second, 60)
    return f"2026-11-23T10:{minutes:02d}:{seconds:02d}Z"


def send(platform: PlatformServer, run_id: str, call: str, body: dict[str, Any]) -> None:
    response = platform.api("POST", f"/api/perf/runs/{run_id}/{call}", body)
    assert response.status_code == 200, response.text


def start(platform: PlatformServer, run_id: str) -> None:
    locust = {"version": "2.47.0", "mode": "local", "users": 50, "spawn_rate": 5, "run_time": 160}
    body = {"arguments": ARGUMENTS, "host": "http://search.staging:8080", "locust": locust}
    send(platform, run_id, "start", {**body, "started_at": at(0)})


def progress(second: int, *, p95: float | None) -> dict[str, Any]:
    users = min(50, second // 2)
    body = {"at": at(second), "users": users, "workers": 0, "rps": round(users * 1.8, 2)}
    failures = 0.02 if second >= 120 else 0.0
    body |= {
        "fail_ratio": failures,
        "requests": second * 80,
        "failures": int(second * 80 * failures),
    }
    return body if p95 is None else {**body, "p95_ms": p95}


@pytest.fixture
def runs(platform_factory: PlatformFactory) -> tuple[PlatformServer, dict[str, str]]:
    """The three runs, by what became of them."""
    platform = platform_factory(token=TOKEN, progress_timeout=0)
    ids = {
        what: platform.create_run(endpoint="search", environment="staging")
        for what in ("completed", "failed", "pending")
    }
    start(platform, ids["completed"])
    for second in PROGRESS_AT:
        p95 = None if second == 40 else 180.0 + second * 2.5  # one call without a p95
        send(platform, ids["completed"], "progress", progress(second, p95=p95))
    send(platform, ids["completed"], "complete", {"finished_at": at(160), "summary": SUMMARY})
    start(platform, ids["failed"])
    for second in (10, 20, 30):
        send(platform, ids["failed"], "progress", progress(second, p95=None))
    failure = {"reason": REASON, "exit_code": 6, "summary": {"error": "KeyError: 'total'"}}
    send(platform, ids["failed"], "fail", {"finished_at": at(35), **failure})
    return platform, ids


@pytest.fixture
def window(browser: Browser) -> Iterator[Browser]:
    browser.artifacts = ARTIFACTS
    yield browser


def css(window: Browser, selector: str) -> list[Any]:
    return list(window.driver.find_elements(By.CSS_SELECTOR, selector))


def drawn(window: Browser, metric: str) -> int:
    """How many points the metric's chart draws: polyline vertices and single dots."""
    chart = f'svg.chart[data-metric="{metric}"]'
    lines = css(window, f"{chart} polyline")
    return sum(len(line.get_attribute("points").split()) for line in lines) + len(
        css(window, f"{chart} circle")
    )


def full_page_shot(window: Browser, name: str) -> None:
    """A screenshot of the whole page, not just the window's first screen."""
    driver = window.driver
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], max(size["height"], height + 100))
    try:
        window.screenshot(name)
    finally:
        driver.set_window_size(size["width"], size["height"])


def test_the_pages_chart_runs_for_whoever_has_the_token_and_nobody_else(
    runs: tuple[PlatformServer, dict[str, str]], window: Browser
) -> None:
    platform, ids = runs
    driver = window.driver

    # Without the token Chromium gets the 401 and its challenge, and holds the page at its
    # credentials prompt (which headless cannot draw): nothing of the platform is shown.
    for page in ("/", f"/runs/{ids['completed']}"):
        driver.get(platform.url + page)
        source = driver.page_source
        assert "gpt-4o" not in source and all(run_id not in source for run_id in ids.values())
    window.screenshot("01-without-the-token-chromium-asks-for-it")

    driver.get(platform.url.replace("http://", f"http://perfx:{TOKEN}@") + "/")
    window.wait(lambda d: css(window, "tbody tr"), "the run list")
    assert [row.find_element(By.TAG_NAME, "a").text for row in css(window, "tbody tr")] == [
        ids["pending"],
        ids["failed"],
        ids["completed"],
    ]
    sparks = css(window, "svg.spark polyline")
    assert [len(line.get_attribute("points").split()) for line in sparks] == [3, 6, 5]
    assert [cell.text for cell in css(window, "td.reason-cell")] == ["", REASON, ""]
    full_page_shot(window, "02-run-list")

    driver.find_element(By.LINK_TEXT, ids["completed"]).click()
    window.wait(lambda d: css(window, "svg.chart"), "the run page")
    assert [drawn(window, m) for m in ("users", "rps", "fail_ratio", "p95_ms")] == [11, 11, 11, 10]
    assert len(css(window, 'svg.chart[data-metric="users"] polyline')) == 2  # the silence
    assert all(chart.size["width"] > 300 for chart in css(window, "svg.chart"))
    rows = [row.text for row in css(window, "table.requests tbody tr")]
    assert [row.split()[:2] for row in rows] == [
        ["GET", "/search"],
        ["POST", "/rerank"],
        ["GET", "/health"],
    ]
    argument = driver.find_element(By.XPATH, "//tr[th='model']/td")
    assert argument.text == ARGUMENTS["model"]
    assert driver.find_element(By.XPATH, "//tr[th='warm_up']/td").text == "true"
    full_page_shot(window, "03-run-completed")

    driver.get(f"{platform.url}/runs/{ids['failed']}")
    window.wait(lambda d: css(window, "p.reason"), "the failed run's reason")
    assert css(window, "p.reason")[0].text == REASON
    assert "could not build the summary: KeyError: 'total'" in css(window, "p.reason")[1].text
    assert [drawn(window, m) for m in ("users", "rps", "fail_ratio", "p95_ms")] == [3, 3, 3, 0]
    assert "the progress calls carry no p95_ms" in driver.page_source
    full_page_shot(window, "04-run-failed")

    driver.get(f"{platform.url}/runs/{ids['pending']}")
    window.wait(lambda d: css(window, "h1"), "the pending run's page")
    assert "No progress reported yet." in driver.page_source and not css(window, "svg")
    full_page_shot(window, "05-run-pending")

    assert TOKEN not in driver.page_source
    assert platform.stop() == 0
    assert TOKEN not in platform.output
