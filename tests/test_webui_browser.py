"""The plugin in Locust's real web UI, driven by headless Chromium.

One Locust process serves a run of the reference platform; the test uses the page as a
person would: a bad value, a missing required one, a good start, the PerfX tab, Stop, a
refused restart and a fresh run id. Screenshots of each step land in test-artifacts/webui/.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from locust_perfx.webui import TAB_TITLE
from tests.fixtures.browser import Browser
from tests.fixtures.locust import EXAMPLES, LocustProcess, LocustRunner, Target, free_port
from tests.fixtures.platform import PlatformFactory, PlatformServer
from tests.fixtures.tsdb import VictoriaMetrics
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.slow

PLATFORM_TOKEN = "plat-tok-7f3a9c-never-shown"
INFLUX_TOKEN = "influx-tok-51d2e8-never-shown"
# Names the form mangles on the way back: digits and one-letter segments.
AWKWARD = [
    {"name": "p95_threshold", "type": "float", "default": "250", "description": "p95 limit in ms"},
    {"name": "use_http2", "type": "bool", "default": "false", "description": "speak HTTP/2"},
    {"name": "a_b_c", "type": "string", "default": "x", "description": "three short segments"},
]
SCHEMA: dict[str, Any] = {
    "parameters": json.loads((EXAMPLES / "schema.json").read_text())["parameters"] + AWKWARD
}


def by_name(name: str) -> Callable[[Any], Any]:
    """The form field the UI named ``name`` (Locust camelCases option names)."""

    def find(driver: Any) -> Any:
        found = driver.find_elements(By.NAME, name)
        return found[0] if found and found[0].is_displayed() else None

    return find


def xpath(path: str) -> Callable[[Any], Any]:
    def find(driver: Any) -> Any:
        found = [e for e in driver.find_elements(By.XPATH, path) if e.is_displayed()]
        return found[0] if found else None

    return find


def alert_text(driver: Any) -> str:
    found = xpath("//*[@role='alert']")(driver)
    return str(found.text) if found else ""


class Page:
    """Locust's start page, as a person uses it."""

    def __init__(self, window: Browser, url: str) -> None:
        self.browser = window
        self.url = url

    def open(self, query: str = "") -> None:
        self.browser.driver.get(self.url + query)
        self.browser.wait(xpath("//*[@id='root']//button"), "the page renders")

    def show_custom_parameters(self) -> None:
        if by_name("runId")(self.browser.driver) is None:
            self.browser.wait(xpath("//*[text()='Custom parameters']"), "the panel").click()
            self.browser.wait(by_name("runId"), "the custom parameters are shown")

    def type(self, name: str, text: str) -> None:
        field = self.browser.wait(by_name(name), f"the {name} field")
        field.send_keys(Keys.CONTROL + "a" + Keys.NULL, Keys.DELETE, text)
        assert field.get_attribute("value") == text

    def start(self) -> None:
        self.browser.wait(xpath("//form//button[@type='submit']"), "Start").click()

    def refused(self, words: str) -> str:
        """Wait for the red message of a refused start, containing ``words``."""
        text = self.browser.wait(
            lambda d: words in alert_text(d) and alert_text(d), f"a message with {words!r}"
        )
        return str(text)

    def click(self, label: str) -> None:
        self.browser.wait(xpath(f"//button[normalize-space()='{label}']"), label).click()

    def tab_value(self, field: str) -> str:
        cell = xpath(f"//tr[td[1][normalize-space()='{field}']]/td[2]")(self.browser.driver)
        return str(cell.text) if cell else ""

    def shows(self, field: str, value: str) -> None:
        """Wait until the PerfX tab's row ``field`` reads ``value``."""
        self.browser.wait(
            lambda d: self.tab_value(field) == value,
            f"{field} = {value!r} in the tab",
        )


@pytest.fixture
def ui(
    platform_factory: PlatformFactory,
    locust_runner: LocustRunner,
    target: Target,
    victoria_metrics: VictoriaMetrics,
    browser: Browser,
) -> tuple[Page, PlatformServer, LocustProcess, str]:
    platform = platform_factory(token=PLATFORM_TOKEN)
    run_id = platform.create_run(SCHEMA, target.url)
    port = free_port()
    proc = locust_runner.start(
        *("--run-id", run_id, "--platform-url", platform.url, "--platform-token", PLATFORM_TOKEN),
        *("--model", "m1", "--gpu_model", "H100"),  # required at init today; see the report
        *("--influxdb-url", victoria_metrics.url, "--influxdb-token", INFLUX_TOKEN),
        *("--influxdb-org", "perf", "--influxdb-bucket", "locust", "--influxdb-interval", "1"),
        *("--web-host", "127.0.0.1", "--web-port", str(port)),
    )
    proc.wait_for("Starting web interface")
    url = f"http://127.0.0.1:{port}/"
    wait_until(  # Locust logs its address a moment before it listens there
        lambda: requests.get(url, timeout=5), ignore=(requests.ConnectionError,), message=url
    )
    return Page(browser, f"http://127.0.0.1:{port}/"), platform, proc, run_id


def test_a_run_started_checked_watched_and_stopped_in_the_browser(
    ui: tuple[Page, PlatformServer, LocustProcess, str], target: Target
) -> None:
    page, platform, proc, run_id = ui
    shot = page.browser.screenshot
    page.open()
    page.show_custom_parameters()
    driver = page.browser.driver
    fields = {n: by_name(n)(driver) for n in ("runId", "model", "batchSize", "gpuModel", "aBC")}
    assert fields["runId"].get_attribute("value") == run_id
    assert fields["batchSize"].get_attribute("value") == "32"
    assert fields["aBC"].get_attribute("value") == "x"
    assert fields["gpuModel"].tag_name == "select"
    options = fields["gpuModel"].find_elements(By.TAG_NAME, "option")
    # No default on the platform: an empty first entry, so that nothing is chosen for the
    # user; the value given at start-up is the one shown.
    assert [o.get_attribute("value") for o in options] == ["", "A100", "H100", "RTX4090"]
    assert fields["gpuModel"].get_attribute("value") == "H100"
    assert fields["gpuModel"].get_attribute("required"), "the required choice is marked"
    assert xpath("//label[contains(., 'Model (model name. Required.') and contains(., '*')]")(
        driver
    ), "the required text box is marked"
    assert xpath("//*[contains(text(), 'documents per request. Defaults to 32.')]")(driver)
    shot("01-form")

    page.type("batchSize", "lots")
    page.start()
    assert page.refused("--batch_size") == (
        '--batch_size (from the web UI form): expected an integer, got "lots"'
    )
    shot("02-bad-value-refused")
    page.type("batchSize", "8")
    page.type("model", " ")
    page.start()
    page.refused("model is required: fill it in the form")
    shot("03-missing-required-refused")
    assert platform.get_run(run_id)["status"] == "pending"
    assert platform.calls(run_id) == []
    assert target.total == 0

    page.type("model", "m2")
    page.type("p95Threshold", "99.5")
    page.type("aBC", "zz")
    page.start()
    wait_until(lambda: platform.get_run(run_id)["status"] == "running", message="running")
    arguments = platform.get_run(run_id)["arguments"]
    assert arguments["p95_threshold"] == 99.5
    assert arguments["a_b_c"] == "zz"
    assert arguments["model"] == "m2"
    assert arguments["batch_size"] == 8
    page.browser.wait(lambda d: target.total > 0, "the target is loaded")
    shot("04-running")

    page.click(TAB_TITLE)
    page.shows("Platform state", "running")
    page.browser.wait(lambda d: int(page.tab_value("Points written") or 0) > 0, "points written")
    page.shows("Run id", run_id)
    page.shows("Argument p95_threshold", "99.5")
    page.shows("Argument a_b_c", "zz")
    page.shows("Run on the platform", f"{platform.url}/runs/{run_id}")
    page.shows("Points dropped", "0")
    shot("05-perfx-tab-running")

    page.click("Stop")
    wait_until(lambda: platform.get_run(run_id)["status"] == "completed", message="completed")
    page.open(f"?tab={TAB_TITLE.lower()}")  # the page polls only while a test runs
    page.browser.wait(xpath("//button[normalize-space()='New']"), "Locust shows the test stopped")
    page.shows("Outcome", "completed")
    page.shows("Platform state", "finished")
    shot("06-perfx-tab-completed")

    calls = len(platform.calls(run_id))
    page.click("New")
    page.show_custom_parameters()
    page.start()
    message = page.refused("already run")
    assert message == (
        f"run {run_id} was already run by this Locust process; create a new run on the "
        "platform and enter its id in the Run id field"
    )
    assert len(platform.calls(run_id)) == calls
    shot("07-restart-refused")

    fresh = platform.create_run(SCHEMA, target.url)
    page.type("runId", fresh)
    page.start()
    wait_until(lambda: platform.get_run(fresh)["status"] == "running", message="fresh running")
    page.click(TAB_TITLE)
    page.shows("Run id", fresh)
    shot("08-fresh-run-running")
    page.click("Stop")
    wait_until(lambda: platform.get_run(fresh)["status"] == "completed", message="completed")
    assert platform.get_run(run_id)["status"] == "completed"

    for secret in (PLATFORM_TOKEN, INFLUX_TOKEN):
        assert secret not in driver.page_source
        assert secret not in proc.output


def test_bool_arguments_are_checkboxes(
    ui: tuple[Page, PlatformServer, LocustProcess, str],
) -> None:
    page, platform, _, run_id = ui
    page.open()
    page.show_custom_parameters()
    driver = page.browser.driver
    checkbox = driver.find_element(By.NAME, "useHttp2")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", checkbox)
    shot = page.browser.screenshot("09-bool-checkboxes")
    for name in ("warmUp", "useHttp2"):
        # MUI hides the real <input> under its drawn box: look it up, do not wait to see it.
        assert driver.find_element(By.NAME, name).get_attribute("type") == "checkbox", shot
    driver.find_element(By.XPATH, "//label[.//input[@name='useHttp2']]").click()
    page.start()
    wait_until(lambda: platform.get_run(run_id)["status"] == "running", message="running")
    assert platform.get_run(run_id)["arguments"]["use_http2"] is True
