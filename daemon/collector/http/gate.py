"""The check in front of `Router.dispatch`: which host was asked, who asks, and may they.

In order, for every request:

1. Host: the Host header must be one of `http.allowed_hosts` (421 otherwise), so a page on
   another site cannot reach the board through DNS rebinding. A request without a Host header
   (HTTP/1.0 scripts) passes: browsers always send one.
2. /api/v1/session is answered here: GET the login state {user, csrf}, POST {"user",
   "password"} (JSON or a form) to sign in (200 and the session cookie), DELETE to sign out.
   Failed logins are counted and throttled per user name and client address, with the same
   answer for an unknown user and a wrong password.
3. The user: HTTP Basic (scripts; checked, a wrong one is a 401 even on a read) or the session
   cookie (a bad or expired cookie is no user, not an error).
4. Unsafe methods (all but GET and HEAD) need a user, and with a cookie also the CSRF token,
   in the X-CSRF-Token header or a form's `csrf` field (taken out of the body before the
   route reads it); an Origin header, when sent, must be this server. Basic needs no token:
   a browser never holds Basic credentials for this server, because it is never asked for
   them (401 answers carry no Basic challenge).
5. Reads need a user only when `http.public_read` is false; /healthz is always open, and so
   are the board's page shells and static files (no data in them: /, /login, /device/, /static/).

The route then runs with `request.user` set; a session older than a minute gets a renewed
cookie (sliding expiry). The security headers are added by the server to every answer,
its own refusals included (`security_headers`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import time
from collections.abc import Callable
from email.message import Message
from typing import ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import field_validator

from fleet.config.collector import HttpSettings
from fleet.daemon.collector.http import auth
from fleet.daemon.collector.http.models import _Body, form_or_json, one_line, parse
from fleet.daemon.collector.http.router import Refused, Response, Router, split_target

_LOG = logging.getLogger(__name__)

SESSION_PATH = "/api/v1/session"
ALWAYS_OPEN = frozenset({"/healthz", "/", "/login"})
# The board's page shells and static files (pages.py) hold no data - the pages fetch it from
# the API, which asks for a login - so a browser reaches the login page without one.
OPEN_PREFIXES = ("/static/", "/device/")
SAFE_METHODS = frozenset({"GET", "HEAD"})
CSRF_HEADER = "X-CSRF-Token"
AuditHook = Callable[[str, str, str], None]
"""on_audit(user, action, detail): "login" / "logout", for the audit trail in InfluxDB."""

_SECURITY = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_WRONG = "wrong user name or password"
_SIGN_IN = f"sign in first: changes need a user (POST {SESSION_PATH}, or HTTP Basic)"


def security_headers(response: Response) -> dict[str, str]:
    """The headers every answer carries; an answer may set its own Cache-Control (static
    files), the rest are never cached (they hold live state and CSRF tokens)."""
    headers = dict(_SECURITY)
    headers["Cache-Control"] = "no-store"
    headers.update(response.headers)
    return headers


class LoginRequest(_Body):
    MISSING: ClassVar[dict[str, str]] = {
        "user": 'say who signs in: "user"',
        "password": 'give the password: "password"',
    }

    user: str
    password: str
    csrf: str | None = None  # a login form may carry the page's token; not needed here

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        return one_line(value, 64) or _fail(cls.MISSING["user"])


def _fail(message: str) -> str:
    raise ValueError(message)


@dataclasses.dataclass
class GateCounters:
    login_failures: int = 0
    logins_throttled: int = 0
    refused_host: int = 0


@dataclasses.dataclass(frozen=True)
class _Who:
    user: str | None
    session: auth.Session | None = None
    basic: bool = False


class Gate:
    """`router` behind the checks above, for `settings` (users, hosts, public_read)."""

    def __init__(
        self,
        router: Router,
        settings: HttpSettings,
        *,
        key: bytes,
        tls: bool = False,
        on_audit: AuditHook | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.router = router
        self.users = auth.Users({n: s.get_secret_value() for n, s in settings.users.items()})
        self.sessions = auth.Sessions(key, self.users, hours=settings.session_hours, clock=clock)
        self.throttle = auth.Throttle(settings.login_max_failures, clock=monotonic)
        self.public_read = settings.public_read
        self.tls = tls
        self.on_audit = on_audit
        self.counters = GateCounters()
        self._hosts = {h.lower() for h in settings.hosts}

    def dispatch(
        self,
        method: str,
        target: str,
        headers: Message,
        read_body: Callable[[], bytes],
        client: str,
    ) -> Response:
        self._check_host(headers.get("Host"))
        path, _ = split_target(target)
        if path == SESSION_PATH:
            return self._session_api(method, headers, read_body, client)
        who = self._who(headers, client)
        if method not in SAFE_METHODS:
            self._check_origin(headers.get("Origin"), headers.get("Host"))
            if who.user is None:
                raise Refused(401, _SIGN_IN)
            if who.session is not None:
                read_body = self._check_csrf(who.session, headers, read_body)
        elif (
            who.user is None
            and not self.public_read
            and path not in ALWAYS_OPEN
            and not path.startswith(OPEN_PREFIXES)
        ):
            raise Refused(401, f"sign in to read this board (POST {SESSION_PATH})")
        response = self.router.dispatch(method, target, headers, read_body, user=who.user)
        if who.session is not None:
            renewed = self.sessions.renewal(who.session)
            if renewed is not None:
                response = self._with_cookie(response, renewed, self.sessions.lifetime_s)
        return response

    # --- checks ------------------------------------------------------------------------------

    def _check_host(self, host: str | None) -> None:
        if host is None or "*" in self._hosts:
            return
        wanted = host.strip().lower()
        name = wanted.rsplit(":", 1)[0] if not wanted.endswith("]") else wanted
        if wanted not in self._hosts and name not in self._hosts:
            self.counters.refused_host += 1
            shown = one_line(host, 80)
            raise Refused(421, f"Host {shown!r} is not one of http.allowed_hosts")

    def _check_origin(self, origin: str | None, host: str | None) -> None:
        if origin is None:
            return
        parts = urlsplit(origin.strip().lower()) if origin.strip() != "null" else None
        scheme = "https" if self.tls else "http"
        if parts is None or parts.scheme != scheme or parts.netloc != (host or "").lower():
            shown = one_line(origin, 80)
            raise Refused(403, f"Origin {shown!r} is not this server: changes come from its pages")

    def _check_csrf(
        self, session: auth.Session, headers: Message, read_body: Callable[[], bytes]
    ) -> Callable[[], bytes]:
        token = headers.get(CSRF_HEADER)
        content_type = headers.get("Content-Type", "")
        if token is None and content_type.startswith("application/x-www-form-urlencoded"):
            fields = parse_qsl(read_body().decode("utf-8", "replace"), keep_blank_values=True)
            token = next((v for k, v in fields if k == "csrf"), None)
            rest = urlencode([(k, v) for k, v in fields if k != "csrf"]).encode()
            read_body = lambda: rest  # noqa: E731 - the route reads the form without the token
        if not self.sessions.csrf_ok(session, token):
            missing = "missing" if token is None else "wrong"
            raise Refused(
                403,
                f"the CSRF token is {missing}: send the {CSRF_HEADER} header with the csrf "
                f"value of GET {SESSION_PATH} (reload the page)",
            )
        return read_body

    def _who(self, headers: Message, client: str) -> _Who:
        authorization = headers.get("Authorization")
        if authorization is not None:
            user, password = _basic(authorization)
            self._login(user, password, client)
            return _Who(user, basic=True)
        session = self._cookie_session(headers)
        return _Who(session.user if session else None, session)

    def _cookie_session(self, headers: Message) -> auth.Session | None:
        for header in headers.get_all("Cookie") or []:
            for pair in header.split(";"):
                name, _, value = pair.strip().partition("=")
                if name == auth.COOKIE:
                    session = self.sessions.check(value)
                    if session is not None:
                        return session
        return None

    def _login(self, user: str, password: str, client: str) -> None:
        """Refused (401, or 429 while throttled) unless user + password are right."""
        shown = one_line(user, 64)
        wait = self.throttle.wait_s(user, client)
        if wait:
            self.counters.logins_throttled += 1
            raise Refused(
                429,
                f"too many failed logins for {shown!r} from this address; "
                f"try again in {wait:.0f} s",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        if not self.users.check(user, password):
            self.counters.login_failures += 1
            failures = self.throttle.failed(user, client)
            # The password never reaches the log, not even a wrong one (it may be the right
            # one for another account, or this one with a typo).
            _LOG.warning(
                "failed login for %r from %s (%d in the last minute)", shown, client, failures
            )
            raise Refused(401, _WRONG)
        self.throttle.succeeded(user, client)

    # --- /api/v1/session -------------------------------------------------------------------

    def _session_api(
        self, method: str, headers: Message, read_body: Callable[[], bytes], client: str
    ) -> Response:
        if method in SAFE_METHODS:
            who = self._who(headers, client)
            csrf = who.session.csrf if who.session else None
            return Response.json(
                200, {"user": who.user, "csrf": csrf, "public_read": self.public_read}
            )
        if method == "POST":
            self._check_origin(headers.get("Origin"), headers.get("Host"))
            body = parse(LoginRequest, form_or_json(read_body(), headers.get("Content-Type", "")))
            self._login(body.user, body.password, client)
            cookie, session = self.sessions.issue(body.user)
            _LOG.info("login: %r from %s", body.user, client)
            self._audit(body.user, "login", f"from {client}")
            answer = Response.json(
                200, {"user": body.user, "csrf": session.csrf, "public_read": self.public_read}
            )
            return self._with_cookie(answer, cookie, self.sessions.lifetime_s)
        if method == "DELETE":
            self._check_origin(headers.get("Origin"), headers.get("Host"))
            ended = self._cookie_session(headers)
            if ended is not None:
                self._check_csrf(ended, headers, read_body)
                self.sessions.revoke(ended)
                _LOG.info("logout: %r from %s", ended.user, client)
                self._audit(ended.user, "logout", f"from {client}")
            answer = Response.json(200, {"user": None, "csrf": None})
            return self._with_cookie(answer, "", 0)
        raise Refused(
            405,
            f"{method} is not allowed here; use DELETE, GET, HEAD, POST",
            headers={"Allow": "DELETE, GET, HEAD, POST"},
        )

    def _audit(self, user: str, action: str, detail: str) -> None:
        if self.on_audit is None:
            return
        try:
            self.on_audit(user, action, detail)
        except Exception:  # noqa: BLE001 - an audit sink down must not refuse the login
            _LOG.exception("audit of %s by %r failed", action, user)

    def _with_cookie(self, response: Response, value: str, max_age: int) -> Response:
        cookie = auth.cookie_header(value, max_age=max_age, secure=self.tls)
        return dataclasses.replace(response, headers={**response.headers, "Set-Cookie": cookie})


def _basic(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise Refused(401, "the Authorization header must be HTTP Basic (user:password)")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Refused(401, "the Authorization header is not base64 of user:password") from None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        raise Refused(401, "the Authorization header is not base64 of user:password")
    return user, password
