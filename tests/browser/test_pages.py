"""The page routes without a browser: the allow-list, caching, the site chooser, escaping."""

from __future__ import annotations

import re
import secrets
from email.message import Message

import pytest

from fleet.config.collector import HttpSettings
from fleet.daemon.collector.http.gate import Gate
from fleet.daemon.collector.http.pages import STATIC, add_page_routes
from fleet.daemon.collector.http.router import Refused, Response, Router

TWO = {"allingtown": "Allingtown", "westhaven": "West Haven <downtown>"}


def get(router: Router, target: str, **headers: str) -> Response:
    message = Message()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return router.dispatch("GET", target, message, lambda: b"")


def routed(site_names: dict[str, str] = TWO) -> Router:
    router = Router()
    add_page_routes(router, site_names=site_names, timezone="America/New_York")
    return router


def test_every_static_file_is_served_with_its_type_and_a_strong_etag() -> None:
    router = routed()
    total = 0
    for name, content_type in STATIC.items():
        answer = get(router, f"/static/{name}")
        assert answer.status == 200
        assert answer.content_type == content_type
        assert re.fullmatch(r'"[0-9a-f]{20}"', answer.headers["ETag"])
        assert answer.headers["Cache-Control"] == "no-cache"
        total += len(answer.body)
    assert total < 60_000, f"static files are {total} bytes"


def test_a_file_outside_the_allow_list_is_404() -> None:
    router = routed()
    for target in ("/static/board.html", "/static/pages.py", "/static/..%2Fpages.py", "/static/x"):
        with pytest.raises(Refused) as refused:
            get(router, target)
        assert refused.value.status == 404


def test_a_known_etag_is_answered_304_and_a_hashed_url_is_cached_for_good() -> None:
    router = routed()
    etag = get(router, "/static/board.js").headers["ETag"]
    again = get(router, "/static/board.js", If_None_Match=f'"other", {etag}')
    assert (again.status, again.body) == (304, b"")
    changed = get(router, "/static/board.js", If_None_Match='"other"')
    assert changed.status == 200
    versioned = get(router, f"/static/board.js?v={etag.strip(chr(34))}")
    assert "immutable" in versioned.headers["Cache-Control"]
    stale = get(router, "/static/board.js?v=0123")
    assert stale.headers["Cache-Control"] == "no-cache"


def test_pages_link_their_static_files_by_hash() -> None:
    router = routed()
    page = get(router, "/?site=allingtown").body.decode()
    for name in ("board.css", "common.js", "board.js"):
        etag = get(router, f"/static/{name}").headers["ETag"].strip('"')
        assert f"/static/{name}?v={etag}" in page


def test_several_sites_get_a_chooser_and_names_are_escaped() -> None:
    answer = get(routed(), "/")
    page = answer.body.decode()
    assert answer.content_type.startswith("text/html")
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert 'href="/?site=westhaven"' in page
    assert "West Haven &lt;downtown&gt;" in page
    assert "<downtown>" not in page
    kiosk = get(routed(), "/?kiosk=1").body.decode()
    assert 'href="/?site=allingtown&amp;kiosk=1"' in kiosk


def test_one_site_goes_straight_to_its_board() -> None:
    page = get(routed({"allingtown": "Allingtown"}), "/").body.decode()
    assert 'data-site="allingtown"' in page
    assert 'id="tiles"' in page


def test_the_board_of_a_site_and_the_kiosk() -> None:
    router = routed()
    page = get(router, "/?site=westhaven").body.decode()
    assert 'data-site="westhaven"' in page
    assert 'data-tz="America/New_York"' in page
    assert 'data-kiosk="0"' in page
    assert "<h1>West Haven &lt;downtown&gt; " in page
    kiosk = get(router, "/?site=westhaven&kiosk=1").body.decode()
    assert 'class="kiosk"' in kiosk
    assert 'data-kiosk="1"' in kiosk
    unnamed = get(router, "/?site=north-3").body.decode()
    assert "<h1>north-3 " in unnamed  # heard but not named in the config: its id


def test_a_site_that_is_no_id_is_404_with_the_reason() -> None:
    with pytest.raises(Refused) as refused:
        get(routed(), "/?site=%3Cscript%3E")
    assert refused.value.status == 404
    assert "site" in refused.value.message


def test_device_and_login_pages() -> None:
    router = routed()
    device = get(router, "/device/sw-04").body.decode()
    assert 'data-device="sw-04"' in device
    assert "/static/device.js?v=" in device
    login = get(router, "/login").body.decode()
    assert 'type="password"' in login
    assert 'method="post"' in login
    with pytest.raises(Refused) as refused:
        get(router, "/device/sw%2004")
    assert refused.value.status == 404


def test_without_public_read_the_pages_still_reach_the_login() -> None:
    """The shells hold no data; the API behind them still asks for a login."""
    router = routed()
    router.get("/api/v1/devices", lambda request: Response.json(200, []))
    settings = HttpSettings(bind="127.0.0.1:8080", public_read=False)
    gate = Gate(router, settings, key=secrets.token_bytes(32))
    headers = Message()
    headers["Host"] = "127.0.0.1:8080"
    for path in ("/", "/login", "/device/sw-01", "/static/login.js"):
        answer = gate.dispatch("GET", path, headers, lambda: b"", "127.0.0.1")
        assert answer.status == 200, path
    with pytest.raises(Refused) as refused:
        gate.dispatch("GET", "/api/v1/devices", headers, lambda: b"", "127.0.0.1")
    assert refused.value.status == 401
