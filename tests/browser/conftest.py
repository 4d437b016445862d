"""Browser fixtures: Debian's headless Chromium through Selenium, and a running station.

Chromium is the one part these tests cannot start without: when /usr/bin/chromium or
/usr/bin/chromedriver is missing they are skipped with the command that installs them
(scripts/setup does). Screenshots go to the test's temporary folder, and also to
docs/screenshots/ (shown in the README) only when FLEET_SCREENSHOTS=1 is set.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.station import Station, start_station, stop_station
from tests.harness.influx import InfluxServer
from tests.harness.servers import MosquittoServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
_dbs = itertools.count(1)

Browser = Callable[..., WebDriver]


def viewport(driver: WebDriver, width: int, height: int, *, mobile: bool) -> None:
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def _missing() -> str | None:
    gone = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if gone:
        return (
            f"{' and '.join(gone)} not found: install Debian's chromium and chromium-driver "
            "(scripts/setup does: apt-get install chromium chromium-driver)"
        )
    return None


@pytest.fixture(scope="module")
def station(
    mqtt_broker: MosquittoServer, influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Station]:
    if (reason := _missing()) is not None:
        pytest.skip(reason)
    db = f"t_browser_{os.getpid()}_{next(_dbs)}"
    influx.create_database(db)
    running = start_station(tmp_path_factory.mktemp("station"), mqtt_broker, influx, db)
    try:
        yield running
    finally:
        stop_station(running)
        influx.drop_database(db)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """A factory of headless Chromium windows (`browser(width=360)`), each its own profile."""
    if (reason := _missing()) is not None:
        pytest.skip(reason)
    opened: list[WebDriver] = []

    def open_window(width: int = 1280, height: int = 900) -> WebDriver:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in (
            "--headless=new",
            "--no-sandbox",  # the tests may run as root in a container
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--hide-scrollbars",  # a scrollbar would narrow the 360 px view on its own
            f"--user-data-dir={tmp_path / f'chromium-{len(opened)}'}",
            f"--window-size={width},{height}",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
        driver = webdriver.Chrome(options=options, service=service)
        opened.append(driver)
        # The viewport is set through the DevTools protocol: a window cannot be made narrower
        # than 500 px on every platform, and a handheld's viewport is a mobile one.
        viewport(driver, width, height, mobile=width < 500)
        return driver

    yield open_window
    for driver in opened:
        driver.quit()


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[WebDriver, str], Path]:
    """Save the whole page as `name`.png under tmp_path (and docs/screenshots/ when asked)."""

    def save(driver: WebDriver, name: str) -> Path:
        width, height = driver.execute_script(
            "return [window.innerWidth, document.documentElement.scrollHeight]"
        )
        viewport(driver, int(width), min(int(height), 4000), mobile=int(width) < 500)
        path = tmp_path / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot {path}"
        if os.environ.get("FLEET_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / path.name)
        return path

    return save
