"""The board's web pages: HTML shells and a fixed set of static files, all served locally.

GET /                    the board of one site (`?site=S`); with one known site, that site;
                         otherwise a site chooser. `?kiosk=1`: the wall screen (read only).
GET /device/{device}     one device: every field, its alerts, sign-out history, 24 h chart
GET /login               the sign-in form (the session itself is POST /api/v1/session)
GET /static/{name}       the allow-list below, nothing else

The pages are shells: the data comes from the JSON API, polled by the page's script, so
a page never shows anything the API would not. Files are read once at start with
importlib.resources (they ship in the wheel). Static URLs carry the file's hash (`?v=`),
so a browser may keep them for a year and still never runs an old script after an
upgrade; without the hash it revalidates with the ETag. No CDN, no web fonts, no inline
script or style: the Content-Security-Policy allows only this origin's files.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from string import Template

from fleet.daemon import wire
from fleet.daemon.collector.http.router import Refused, Request, Response, Router

_PACKAGE = "fleet.daemon.collector.http"
STATIC: dict[str, str] = {
    "board.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "board.js": "text/javascript; charset=utf-8",
    "device.js": "text/javascript; charset=utf-8",
    "login.js": "text/javascript; charset=utf-8",
    "sites.js": "text/javascript; charset=utf-8",
}
_TEMPLATES = ("board.html", "device.html", "login.html", "sites.html")
_HTML = "text/html; charset=utf-8"

# 'self' only: a value from the API that reached the DOM as markup could not load or run
# anything. The scripts build the DOM with textContent, never innerHTML.
_SECURITY = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    etag: str


def _read(name: str) -> bytes:
    return resources.files(_PACKAGE).joinpath("static", name).read_bytes()


def _load(name: str, content_type: str) -> _File:
    body = _read(name)
    return _File(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


def _flag(request: Request, name: str) -> bool:
    values = request.query().get(name)
    return values is not None and values[-1] in ("1", "true", "yes")


def _site(request: Request) -> str | None:
    values = request.query().get("site")
    if not values or not values[-1]:
        return None
    try:
        return wire.check_id("site", values[-1])
    except ValueError as exc:
        raise Refused(404, str(exc)) from None


def _not_modified(request: Request, etag: str) -> bool:
    wanted = request.headers.get("If-None-Match", "")
    return etag in (tag.strip() for tag in wanted.split(","))


class Pages:
    """The loaded files and the handlers that serve them."""

    def __init__(self, site_names: Mapping[str, str], timezone: str = "") -> None:
        self.site_names = dict(site_names)
        self.timezone = timezone
        self.static = {name: _load(name, kind) for name, kind in STATIC.items()}
        self.templates = {name: Template(_read(name).decode("utf-8")) for name in _TEMPLATES}

    def _url(self, name: str) -> str:
        return f"/static/{name}?v={self.static[name].etag.strip(chr(34))}"

    def _page(self, template: str, title: str, *, kiosk: bool = False, **values: str) -> Response:
        text = self.templates[template].substitute(
            title=html.escape(title),
            css=self._url("board.css"),
            common=self._url("common.js"),
            script=self._url(template.replace(".html", ".js")),
            body_class="kiosk" if kiosk else "",
            kiosk="1" if kiosk else "0",
            tz=html.escape(self.timezone),
            **{key: html.escape(value) for key, value in values.items()},
        )
        headers = {**_SECURITY, "Cache-Control": "no-cache"}
        return Response(200, text.encode("utf-8"), _HTML, headers)

    def board(self, request: Request) -> Response:
        kiosk = _flag(request, "kiosk")
        site = _site(request)
        if site is None and len(self.site_names) == 1:
            site = next(iter(self.site_names))
        if site is None:
            return self._chooser(kiosk)
        name = self.site_names.get(site, site)
        return self._page(
            "board.html", f"{name}: ready to take", kiosk=kiosk, site=site, site_name=name
        )

    def _chooser(self, kiosk: bool) -> Response:
        suffix = "&kiosk=1" if kiosk else ""
        items = "".join(
            f'<li><a class="site" href="{html.escape(f"/?site={site}{suffix}")}" '
            f'data-site="{html.escape(site)}">{html.escape(name)}</a></li>'
            for site, name in sorted(self.site_names.items(), key=lambda kv: kv[1].lower())
        )
        page = self._page("sites.html", "Choose a site", kiosk=kiosk)
        body = page.body.replace(b"<!--sites-->", items.encode("utf-8"))
        return Response(page.status, body, page.content_type, page.headers)

    def device(self, request: Request) -> Response:
        device = request.text("device")
        return self._page("device.html", f"{device}: device", device=device)

    def login(self, request: Request) -> Response:
        return self._page("login.html", "Sign in")

    def file(self, request: Request) -> Response:
        name = request.text("name")
        found = self.static.get(name)
        if found is None:
            raise Refused(404, f"no static file {name!r}")
        versioned = request.query().get("v", [""])[-1] == found.etag.strip('"')
        headers = {
            "ETag": found.etag,
            # A hashed URL never changes; an unhashed one is checked each time.
            "Cache-Control": "public, max-age=31536000, immutable" if versioned else "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        if _not_modified(request, found.etag):
            return Response(304, b"", found.content_type, headers)
        return Response(200, found.body, found.content_type, headers)


def add_page_routes(router: Router, *, site_names: Mapping[str, str], timezone: str = "") -> Pages:
    """Route the board's pages on `router`; the files are read now (a missing one fails start).

    `timezone` (the station's, `alerts.timezone`): the pages show clock times in it, as the
    verdicts' reasons and alert messages do, whatever zone the screen is set to; "" means
    the screen's own.
    """
    pages = Pages(site_names, timezone)
    router.get("/", pages.board)
    router.get("/device/{device:id}", pages.device)
    router.get("/login", pages.login)
    router.get("/static/{name:id}", pages.file)
    return pages
