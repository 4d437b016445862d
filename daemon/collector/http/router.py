"""The route table: method + path pattern -> handler, with typed path parameters.

A pattern is literal segments and `{name:type}` parameters, e.g.
`/alerts/{device:id}/{rule:id}/ack`. Types: `id` (the contract's id rule, `wire.check_id`)
and `int` (ASCII digits, at most 18: `int()` alone also reads "²" and "١"). A parameter is
percent-decoded before it is checked, so `sw%2D05` is `sw-05` and `sw%2F05` is refused.

Dispatch answers, in this order: the first route whose shape, method and parameters match;
404 with the parameter's reason when the shape and method match but a parameter does not;
405 with `Allow` when the path exists for other methods only; 404 otherwise. HEAD is
answered wherever GET is (without the body). The query string is parsed for the handlers
that ask for it (`Request.query`) and ignored by the rest (`/healthz?x=1` is `/healthz`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import parse_qs, unquote, urlsplit

from fleet.daemon import wire

MAX_QUERY_FIELDS = 50
_MAX_INT_DIGITS = 18  # fits an SQLite integer


class Refused(Exception):
    """A request we answer with `status` and `message` (no traceback: the fault is the client's)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.fields = dict(fields or {})

    def response(self) -> Response:
        body: dict[str, object] = {"error": self.message}
        if self.fields:
            body["fields"] = self.fields  # per field, for a form to show beside its inputs
        return Response.json(self.status, body, headers=self.headers)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, status: int, value: object, *, headers: Mapping[str, str] | None = None
    ) -> Response:
        # A lone surrogate (a client's "\ud800" echoed back) must not turn an answer into a 500.
        data = json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")
        return cls(status, data, headers=dict(headers or {}))


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query_string: str  # parsed only by a handler that asks: `query()`
    params: Mapping[str, str | int]
    headers: Message
    read_body: Callable[[], bytes]  # only a route that takes a body reads it (and it is checked)
    user: str | None = None  # the signed-in user the gate found (gate.py); None: anonymous

    def query(self) -> dict[str, list[str]]:
        try:
            return parse_qs(
                self.query_string,
                keep_blank_values=True,
                errors="replace",
                max_num_fields=MAX_QUERY_FIELDS,
            )
        except ValueError:
            raise Refused(400, f"the query has more than {MAX_QUERY_FIELDS} fields") from None

    def text(self, name: str) -> str:
        value = self.params[name]
        assert isinstance(value, str), f"{name} is declared as an int"
        return value

    def number(self, name: str) -> int:
        value = self.params[name]
        assert isinstance(value, int), f"{name} is declared as an id"
        return value


Handler = Callable[[Request], Response]


def _id(name: str, value: str) -> str:
    return wire.check_id(name, value)


def _int(name: str, value: str) -> int:
    if value.isascii() and value.isdigit() and len(value) <= _MAX_INT_DIGITS:
        return int(value)
    shown = json.dumps(value[:20], ensure_ascii=False)
    raise ValueError(f"no {name} {shown}: not a number of up to 18 digits")


_CONVERTERS: dict[str, Callable[[str, str], str | int]] = {"id": _id, "int": _int}


@dataclass(frozen=True)
class _Param:
    name: str
    convert: Callable[[str, str], str | int]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    segments: tuple[str | _Param, ...]

    def fits(self, parts: list[str]) -> bool:
        """The same shape: as many segments, the literal ones equal."""
        return len(parts) == len(self.segments) and all(
            isinstance(seg, _Param) or seg == part
            for seg, part in zip(self.segments, parts, strict=True)
        )

    def params(self, parts: list[str]) -> dict[str, str | int]:
        """The typed parameters; ValueError says which one is wrong and why."""
        return {
            seg.name: seg.convert(seg.name, unquote(part, errors="replace"))
            for seg, part in zip(self.segments, parts, strict=True)
            if isinstance(seg, _Param)
        }


def _compile(pattern: str) -> tuple[str | _Param, ...]:
    if not pattern.startswith("/"):
        raise ValueError(f"route {pattern!r} must start with /")
    segments: list[str | _Param] = []
    for part in pattern[1:].split("/"):
        if part.startswith("{") and part.endswith("}"):
            name, _, kind = part[1:-1].partition(":")
            if kind not in _CONVERTERS:
                raise ValueError(f"route {pattern!r}: {{{name}:{kind}}} has no type id or int")
            segments.append(_Param(name, _CONVERTERS[kind]))
        else:
            segments.append(part)
    return tuple(segments)


def _shape(segments: tuple[str | _Param, ...]) -> tuple[object, ...]:
    """What two patterns that match the same paths have in common (not parameter names)."""
    return tuple(seg.convert if isinstance(seg, _Param) else seg for seg in segments)


def split_target(target: str) -> tuple[str, str]:
    """The request target's path and query (origin-form `/p?q`, or absolute-form for proxies)."""
    if not target.startswith("/"):
        if "://" not in target:
            raise Refused(400, "the request target must be a path starting with /")
        parts = urlsplit(target)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    path, _, query = target.partition("?")
    return path.partition("#")[0], query.partition("#")[0]


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        segments = _compile(pattern)
        for route in self._routes:
            if route.method == method and _shape(route.segments) == _shape(segments):
                raise ValueError(f"{method} {pattern} is routed twice ({route.pattern})")
        self._routes.append(Route(method, pattern, handler, segments))

    def get(self, pattern: str, handler: Handler) -> None:
        self.add("GET", pattern, handler)

    def post(self, pattern: str, handler: Handler) -> None:
        self.add("POST", pattern, handler)

    def delete(self, pattern: str, handler: Handler) -> None:
        self.add("DELETE", pattern, handler)

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    def dispatch(
        self,
        method: str,
        target: str,
        headers: Message,
        read_body: Callable[[], bytes],
        user: str | None = None,
    ) -> Response:
        """The handler's answer; Refused for a request no route takes."""
        path, query = split_target(target)
        parts = path[1:].split("/")
        wanted = "GET" if method == "HEAD" else method
        shaped = [route for route in self._routes if route.fits(parts)]
        problem: str | None = None
        for route in shaped:
            if route.method != wanted:
                continue
            try:
                params = route.params(parts)
            except ValueError as exc:
                problem = problem or str(exc)
                continue
            request = Request(method, path, query, params, headers, read_body, user)
            return route.handler(request)
        if problem is not None:
            raise Refused(404, problem)
        if shaped:
            methods = {r.method for r in shaped}
            allowed = sorted(methods | {"HEAD"} if "GET" in methods else methods)
            raise Refused(
                405,
                f"{method} is not allowed here; use {', '.join(allowed)}",
                headers={"Allow": ", ".join(allowed)},
            )
        raise Refused(404, "not found")
