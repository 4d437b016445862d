"""The board in a real headless Chromium, against a real collector fed by `fleet simulate`.

What a person sees: the states of the simulated fleet, a device draining to `low` while the
page stays loaded, signing a device out after logging in, the 360 px handheld view, the
kiosk, the device page and its chart; and what the page must not allow: a change without a
session or without the CSRF token. The station is shared by the module (one collector, one
simulator); each test opens its own browser profile, so no test inherits another's login.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from fleet.daemon.board.model import COLOUR, LABEL, ORDER, Readiness
from tests.browser.conftest import Browser
from tests.browser.station import PASSWORD, USER, Station

pytestmark = pytest.mark.integration

Shot = Callable[[WebDriver, str], Path]
PAGE_WEIGHT_LIMIT = 200 * 1024
TAKEABLE = {"ready", "charging", "low"}
STATION_TZ = ZoneInfo("America/New_York")  # alerts.timezone of the station's config


def wait(driver: WebDriver, timeout: float = 30) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, timeout)


# One snapshot of every tile, read in one script: the page may replace a tile between two
# WebDriver calls (it re-renders a tile whose data changed), so nothing is read piecemeal.
TILES_JS = """return [...document.querySelectorAll("article.tile")].map((t) => ({
  device: t.dataset.device, state: t.dataset.state, cls: t.className,
  label: t.querySelector(".state").textContent, reason: t.querySelector(".reason").textContent,
  pct: t.querySelector(".pct").textContent, seen: t.querySelector(".seen").textContent,
  text: t.innerText, buttons: t.querySelectorAll("button").length,
  actions: [...t.querySelectorAll("button[data-action]")].map((b) => b.dataset.action),
  left: t.getBoundingClientRect().left}));"""


def tiles(driver: WebDriver) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = driver.execute_script(TILES_JS)
    return found


def tile(driver: WebDriver, device: str) -> dict[str, Any] | None:
    return next((t for t in tiles(driver) if t["device"] == device), None)


def state_of(driver: WebDriver, device: str) -> str | None:
    found = tile(driver, device)
    return None if found is None else str(found["state"])


def click(driver: WebDriver, device: str, action: str) -> None:
    driver.find_element(
        By.CSS_SELECTOR, f'[data-device="{device}"] [data-action="{action}"]'
    ).click()


def open_board(driver: WebDriver, station: Station, site: str, extra: str = "") -> None:
    driver.get(f"{station.url}/?site={site}{extra}")
    wait(driver).until(
        lambda d: (
            d.find_element(By.ID, "updated").text.startswith("Last updated")
            and d.find_elements(By.CSS_SELECTOR, "article.tile")
        ),
        "the board never showed a tile",
    )


def log_in(driver: WebDriver, station: Station, then: str) -> None:
    driver.get(f"{station.url}/login?next={then.replace('?', '%3F').replace('&', '%26')}")
    driver.find_element(By.ID, "user").send_keys(USER)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait(driver).until(lambda d: d.find_element(By.ID, "who").text == f"Signed in as {USER}")


def fetch(driver: WebDriver, method: str, path: str, body: object, csrf: bool) -> list[Any]:
    """A request made by the page itself (its cookies, its origin): [status, JSON answer]."""
    result: list[Any] = driver.execute_async_script(
        """const [method, path, body, csrf, done] = arguments;
        const headers = {"Content-Type": "application/json"};
        if (csrf) headers["X-CSRF-Token"] = Fleet.state.csrf;
        fetch(path, {method, headers, body: JSON.stringify(body), credentials: "same-origin"})
          .then(async (r) => done([r.status, await r.json()]))
          .catch((e) => done([0, String(e)]));""",
        method,
        path,
        body,
        csrf,
    )
    return result


def test_a_draining_device_turns_low_without_a_reload(station: Station, browser: Browser) -> None:
    driver = browser()
    open_board(driver, station, "westhaven")
    driver.execute_script("window.sameLoad = true")
    wait(driver).until(lambda d: state_of(d, "sw-04"), "sw-04 never showed")
    first = state_of(driver, "sw-04")
    assert first == "ready", f"sw-04 starts at 63 % and should first be ready, was {first}"
    wait(driver, 90).until(lambda d: state_of(d, "sw-04") == "low", "sw-04 never turned low")
    assert driver.execute_script("return window.sameLoad === true"), "the page was reloaded"
    low = tile(driver, "sw-04")
    assert low is not None
    assert low["label"] == "Low"
    assert "colour-amber" in low["cls"]


def test_tiles_show_the_fleets_states(station: Station, browser: Browser) -> None:
    driver = browser()
    driver.get(station.url + "/")
    sites = {a.get_attribute("data-site") for a in driver.find_elements(By.CSS_SELECTOR, "a.site")}
    assert sites == {"allingtown", "westhaven"}, "two sites: the chooser lists both"
    open_board(driver, station, "allingtown")
    wait(driver).until(
        lambda d: state_of(d, "sw-03") == "out_of_service" and state_of(d, "sw-05") == "offline",
        "the faulted sw-03 out of service and the silent sw-05 offline",
    )
    shown = tiles(driver)
    assert {t["device"] for t in shown} == {"sw-01", "sw-03", "sw-05", "hh-01"}, "this site only"
    ranks = []
    for t in shown:
        state = Readiness(t["state"])
        ranks.append(ORDER[state])
        # Colour and words, never colour alone.
        assert t["label"] == LABEL[state]
        assert f"colour-{COLOUR[state]}" in t["cls"]
        assert t["reason"]
        assert re.fullmatch(r"(\d{1,3} %|charge unknown)( charging)?", t["pct"]), t["pct"]
        assert t["seen"].startswith("Last seen ")
    assert ranks == sorted(ranks), "ready devices first, in the API's order"
    offline = tile(driver, "sw-05")
    assert offline is not None
    assert "STALE" in offline["seen"]
    # Nothing to press without a login: the controls lead to /login.
    assert [t["buttons"] for t in tiles(driver)] == [0, 0, 0, 0]
    assert driver.find_element(By.ID, "login").is_displayed()


def sign_out_in_dialog(driver: WebDriver, device: str, officer: str) -> None:
    click(driver, device, "sign-out")
    driver.find_element(By.ID, "signout-officer").send_keys(officer)


def submitted(driver: WebDriver) -> str:
    """Submit the open sign-out dialog; the refusal shown, or "" once it closed."""
    driver.find_element(By.CSS_SELECTOR, "#signout-form button[type=submit]").click()
    error = driver.find_element(By.ID, "signout-error")
    dialog = driver.find_element(By.ID, "signout")
    wait(driver).until(lambda d: error.text or not dialog.is_displayed(), "no answer to the form")
    return str(error.text)


def test_sign_out_through_the_page_after_logging_in(
    station: Station, browser: Browser, screenshot: Shot
) -> None:
    driver = browser()
    log_in(driver, station, "/?site=allingtown")
    wait(driver).until(lambda d: "site=allingtown" in d.current_url)
    open_board(driver, station, "allingtown")
    wait(driver).until(
        lambda d: state_of(d, "sw-03") == "out_of_service" and state_of(d, "sw-05") == "offline"
    )
    # What cannot be taken offers no sign-out; what can, does.
    for t in tiles(driver):
        assert ("sign-out" in t["actions"]) == (t["state"] in TAKEABLE), t
    target = wait(driver).until(
        lambda d: next((t["device"] for t in tiles(d) if t["state"] in TAKEABLE), None),
        "no device to take",
    )

    # Someone signs it out elsewhere (a script, HTTP Basic) while the form is open here:
    # the page shows the sheet's refusal next to the form.
    sign_out_in_dialog(driver, target, "Officer Dana Reyes")
    status, answer = station.post("/api/v1/assignments", {"device": target, "officer": "Sam Lee"})
    assert status == 201, answer
    refusal = submitted(driver)
    assert f"{target} is already signed out to Sam Lee" in refusal
    driver.find_element(By.ID, "signout-cancel").click()
    wait(driver).until(lambda d: "With Sam Lee" in (tile(d, target) or {}).get("text", ""))

    click(driver, target, "sign-in")
    wait(driver).until(lambda d: state_of(d, target) in TAKEABLE, f"{target} never came back")
    sign_out_in_dialog(driver, target, "Officer Dana Reyes")
    # Due back at 07:15 on the station's clock (America/New_York), whatever the screen's zone.
    driver.execute_script("document.getElementById('signout-due').value = '07:15'")
    assert submitted(driver) == ""
    wait(driver).until(lambda d: state_of(d, target) == "in_use", f"{target} never in use")
    signed = tile(driver, target)
    assert signed is not None
    assert "With Officer Dana Reyes" in signed["text"]
    assert signed["label"] == "In use"
    assert re.search(r"due back (\w{3} )?07:15", signed["text"]), signed["text"]
    current = station.get("/api/v1/assignments")
    assert [(a["device"], a["officer"], a["by"]) for a in current] == [
        (target, "Officer Dana Reyes", USER)
    ]
    due = datetime.fromisoformat(current[0]["due_back"]).astimezone(STATION_TZ)
    now = datetime.now(STATION_TZ)
    assert (due.hour, due.minute) == (7, 15)
    assert now < due <= now + timedelta(days=1), "the next 07:15 on the station's clock"
    screenshot(driver, "board")

    click(driver, target, "sign-in")
    wait(driver).until(lambda d: state_of(d, target) != "in_use", "never signed back in")
    assert station.get("/api/v1/assignments") == []


def test_out_of_service_and_acknowledging_through_the_page(
    station: Station, browser: Browser
) -> None:
    driver = browser()
    log_in(driver, station, "/?site=allingtown")
    open_board(driver, station, "allingtown")
    # The faulted sw-03's alert, acknowledged: the author is the signed-in user.
    wait(driver).until(lambda d: "ack-fault" in (tile(d, "sw-03") or {}).get("actions", []))
    click(driver, "sw-03", "ack-fault")
    wait(driver).until(
        lambda d: f"acknowledged by {USER}" in (tile(d, "sw-03") or {}).get("text", ""),
        "the acknowledgement never showed",
    )
    # Out of service with a reason (the form will not send an empty one), and back.
    click(driver, "hh-01", "oos")
    driver.find_element(By.ID, "oos-reason").send_keys("cracked screen")
    driver.find_element(By.CSS_SELECTOR, "#oos-form button[type=submit]").click()
    wait(driver).until(lambda d: state_of(d, "hh-01") == "out_of_service", "never out of service")
    marked = tile(driver, "hh-01")
    assert marked is not None
    assert f"Out of service: cracked screen ({USER})" in marked["text"]
    assert "sign-out" not in marked["actions"]
    click(driver, "hh-01", "return")
    wait(driver).until(lambda d: state_of(d, "hh-01") != "out_of_service", "never back in service")


def test_a_change_without_session_or_csrf_token_is_refused(
    station: Station, browser: Browser
) -> None:
    driver = browser()
    open_board(driver, station, "allingtown")
    body = {"device": "hh-01", "officer": "Mallory"}
    status, answer = fetch(driver, "POST", "/api/v1/assignments", body, csrf=False)
    assert status == 401, answer
    assert answer["error"]

    log_in(driver, station, "/?site=allingtown")
    status, answer = fetch(driver, "POST", "/api/v1/assignments", body, csrf=False)
    assert status == 403, answer
    assert "CSRF" in answer["error"]
    assert station.get("/api/v1/assignments") == []
    # The same request with the page's token passes the gate and meets the sheet's rules.
    status, answer = fetch(driver, "POST", "/api/v1/assignments/hh-01/return", {}, csrf=True)
    assert status == 409, answer


def test_the_handheld_view_has_no_horizontal_scroll(
    station: Station, browser: Browser, screenshot: Shot
) -> None:
    driver = browser(width=360, height=740)
    open_board(driver, station, "allingtown")
    # A mobile viewport: 360 only because the page asks for width=device-width.
    assert driver.execute_script("return window.innerWidth") == 360
    wait(driver).until(lambda d: len(tiles(d)) == 4)
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 360
    columns = {t["left"] for t in tiles(driver)}
    assert len(columns) == 1, f"one column on a handheld, tiles start at x = {sorted(columns)}"
    screenshot(driver, "board-360")
    driver.get(f"{station.url}/device/sw-01")
    wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart svg"))
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 360


def test_the_kiosk_has_no_controls_and_never_asks_to_log_in(
    station: Station, browser: Browser, screenshot: Shot
) -> None:
    driver = browser(width=1920, height=1080)
    log_in(driver, station, "/?site=allingtown")  # even a signed-in screen shows no controls
    open_board(driver, station, "allingtown", "&kiosk=1")
    visible = [
        el.tag_name
        for el in driver.find_elements(By.CSS_SELECTOR, "button, input, a, select, textarea")
        if el.is_displayed()
    ]
    assert visible == [], f"kiosk shows controls: {visible}"
    asked = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('/api/v1/session') || n.includes('/login'))"
    )
    assert asked == [], "the kiosk asked about a login"
    big = driver.execute_script(
        "return parseFloat(getComputedStyle(document.querySelector('.tile h2')).fontSize)"
    )
    assert big >= 28, f"kiosk type is larger, the tile title is {big}px"
    screenshot(driver, "kiosk")


def test_the_device_page_charts_the_last_day(
    station: Station, browser: Browser, screenshot: Shot
) -> None:
    driver = browser(width=1000, height=900)
    driver.get(f"{station.url}/device/sw-04")
    wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart svg path.line"))
    item = station.get("/api/v1/devices/sw-04")
    assert item["history"], "the API has charge history for sw-04"
    facts = driver.find_element(By.ID, "facts").text
    for word in ("sw-04", "segway", "West Haven", item["label"]):
        assert word in facts
    title = driver.find_element(By.CSS_SELECTOR, "#chart svg title").get_attribute("textContent")
    assert title
    assert "Charge over the last 24 hours" in title
    assert (driver.find_element(By.ID, "back").get_attribute("href") or "").endswith(
        "/?site=westhaven"
    )
    screenshot(driver, "device")


def test_page_weight_is_far_below_200_kB(station: Station, browser: Browser) -> None:
    driver = browser()
    open_board(driver, station, "allingtown")
    entries: list[dict[str, Any]] = driver.execute_script(
        "return [...performance.getEntriesByType('navigation'),"
        " ...performance.getEntriesByType('resource')]"
        ".map(e => ({name: e.name, bytes: e.transferSize}))"
    )
    total = sum(int(e["bytes"]) for e in entries)
    names = {e["name"].split("?")[0].rsplit("/", 1)[-1] for e in entries}
    assert {"board.css", "common.js", "board.js"} <= names, names
    assert all(e["bytes"] > 0 for e in entries), f"every request counted: {entries}"
    print(f"page weight of the board: {total} bytes in {len(entries)} requests")
    assert total <= PAGE_WEIGHT_LIMIT, entries


def test_connection_lost_is_shown_and_clears_by_itself(station: Station, browser: Browser) -> None:
    """The collector frozen (SIGSTOP): polls go unanswered; thawed: the board recovers."""
    driver = browser()
    open_board(driver, station, "allingtown")
    banner = driver.find_element(By.ID, "lost")
    assert not banner.is_displayed()
    driver.execute_script("window.sameLoad = true")
    station.collector.send_signal(signal.SIGSTOP)
    try:
        wait(driver).until(lambda d: banner.is_displayed(), "no banner while the collector hangs")
        assert banner.text.startswith("Connection lost since "), banner.text
        assert driver.find_elements(By.CSS_SELECTOR, "article.tile"), "last known tiles kept"
    finally:
        station.collector.send_signal(signal.SIGCONT)
    wait(driver).until(lambda d: not banner.is_displayed(), "the banner never cleared")
    assert driver.execute_script("return window.sameLoad === true"), "recovered without a reload"
