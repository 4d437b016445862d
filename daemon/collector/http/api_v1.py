"""The board's JSON API under /api/v1/.

GET    /api/v1/devices[?site=S]                  verdicts, ready first
GET    /api/v1/devices/{device}                  one verdict + its last 24 h of charge
GET    /api/v1/sites                             each site with its count per state
GET    /api/v1/assignments[?device=D][&history=1] current sign-outs, or the sheet's history
POST   /api/v1/assignments                       sign a device out (201)
POST   /api/v1/assignments/{device}/return       sign it back in
POST   /api/v1/devices/{device}/out-of-service   mark it out of service, with a reason
DELETE /api/v1/devices/{device}/out-of-service   back in service

Alerts, acknowledgements and silences are under /api/v1/ too (handlers.py registers them
on both their old and new paths). Every change needs a signed-in user; the gate in front of
the router has checked that, and `_user` checks again, so a route added without the gate
still refuses.
"""

from __future__ import annotations

from fleet.daemon import wire
from fleet.daemon.board.assignments import SignOutRefused
from fleet.daemon.board.model import Sample
from fleet.daemon.board.render import verdict_json
from fleet.daemon.board.service import BoardService
from fleet.daemon.collector.http.board_models import (
    OutOfServiceRequest,
    ReturnRequest,
    SignOutRequest,
)
from fleet.daemon.collector.http.models import form_or_json, parse
from fleet.daemon.collector.http.router import Refused, Request, Response, Router
from fleet.daemon.wire.envelope import iso

PREFIX = "/api/v1"


def _user(request: Request) -> str:
    user = request.user
    if not user:
        raise Refused(401, "sign in first: changes need a user")
    return user


def _body(request: Request) -> dict[str, object]:
    content_type = request.headers.get("Content-Type", "")
    return form_or_json(request.read_body() or b"{}", content_type)


def _one(request: Request, name: str) -> str | None:
    values = request.query().get(name)
    return values[-1] if values else None


def _site(request: Request, board: BoardService) -> str | None:
    site = _one(request, "site")
    if not site:
        return None
    try:
        return wire.check_id("site", site)
    except ValueError as exc:
        raise Refused(400, str(exc)) from None


def _history(samples: tuple[Sample, ...]) -> list[list[object]]:
    return [[iso(s.ts_ms), round(s.pct, 1), s.charging] for s in samples]


def _takes_gzip(accept_encoding: str) -> bool:
    """Whether the client accepts gzip (`gzip` or `*`, without `q=0`)."""
    for part in accept_encoding.lower().split(","):
        token, _, params = part.strip().partition(";")
        if token.strip() in ("gzip", "*"):
            q = params.strip().removeprefix("q=").strip()
            return not (params.strip().startswith("q=") and q in ("0", "0.0", "0.00", "0.000"))
    return False


def add_board_routes(router: Router, board: BoardService) -> None:
    def devices(request: Request) -> Response:
        snapshot = board.snapshots.get(_site(request, board))
        if _takes_gzip(request.headers.get("Accept-Encoding", "")):
            headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
            return Response(200, snapshot.gzipped, headers=headers)
        return Response(200, snapshot.body, headers={"Vary": "Accept-Encoding"})

    def device(request: Request) -> Response:
        found = board.verdict(request.text("device"))
        if found is None:
            raise Refused(404, f"no device {request.text('device')!r} on this board")
        verdict, facts = found
        item = verdict_json(verdict, now_ms=board.now_ms(), site_names=board.site_names)
        item["history"] = _history(facts.history)
        item["assignments"] = board.store.history(device=verdict.device, limit=20)
        return Response.json(200, item)

    def assignments(request: Request) -> Response:
        wanted = _one(request, "device")
        if _one(request, "history") in ("1", "true", "yes"):
            return Response.json(200, board.store.history(device=wanted or None))
        current = board.store.current()
        return Response.json(
            200,
            [
                {
                    "device": a.device,
                    "officer": a.officer,
                    "signed_out_at": iso(a.out_ms),
                    "due_back": iso(a.due_ms),
                    "by": a.by,
                    "note": a.note,
                    "overdue": a.due_ms < board.now_ms(),
                }
                for a in sorted(current.values(), key=lambda a: a.out_ms)
                if not wanted or a.device == wanted
            ],
        )

    def sign_out(request: Request) -> Response:
        user = _user(request)
        body = parse(SignOutRequest, _body(request))
        now = board.now_ms()
        due = body.due_ms(now, board.settings.board.shift_hours)
        try:
            a = board.sign_out(body.device, body.officer, due_ms=due, by=user, note=body.note)
        except SignOutRefused as exc:
            raise Refused(exc.status, exc.message) from None
        return Response.json(
            201,
            {
                "device": a.device,
                "officer": a.officer,
                "signed_out_at": iso(a.out_ms),
                "due_back": iso(a.due_ms),
                "by": a.by,
            },
        )

    def sign_in(request: Request) -> Response:
        user = _user(request)
        body = parse(ReturnRequest, _body(request))
        try:
            a = board.sign_in(request.text("device"), by=user, note=body.note)
        except SignOutRefused as exc:
            raise Refused(exc.status, exc.message) from None
        return Response.json(200, {"device": a.device, "returned_by": user, "officer": a.officer})

    def out_of_service(request: Request) -> Response:
        user = _user(request)
        body = parse(OutOfServiceRequest, _body(request))
        try:
            mark = board.mark_out_of_service(request.text("device"), reason=body.reason, by=user)
        except SignOutRefused as exc:
            raise Refused(exc.status, exc.message) from None
        return Response.json(
            200,
            {
                "device": mark.device,
                "reason": mark.reason,
                "by": mark.by,
                "since": iso(mark.since_ms),
            },
        )

    def back_in_service(request: Request) -> Response:
        user = _user(request)
        try:
            board.return_to_service(request.text("device"), by=user)
        except SignOutRefused as exc:
            raise Refused(exc.status, exc.message) from None
        return Response.json(200, {"device": request.text("device"), "by": user})

    router.get(f"{PREFIX}/devices", devices)
    router.get(f"{PREFIX}/devices/{{device:id}}", device)
    router.get(f"{PREFIX}/sites", lambda request: Response.json(200, board.sites()))
    router.get(f"{PREFIX}/assignments", assignments)
    router.post(f"{PREFIX}/assignments", sign_out)
    router.post(f"{PREFIX}/assignments/{{device:id}}/return", sign_in)
    router.post(f"{PREFIX}/devices/{{device:id}}/out-of-service", out_of_service)
    router.delete(f"{PREFIX}/devices/{{device:id}}/out-of-service", back_in_service)
