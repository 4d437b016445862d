"""The collector's routes: health, open alerts, acknowledgements and silences.

GET    /healthz                                 200 when MQTT is up and the spool commits, else 503
GET    /api/v1/alerts                           the firing alerts, as their retained JSON
POST   /api/v1/alerts/{device}/{rule}/ack       acknowledges (the signed-in user): stops the repeats
GET    /api/v1/silences                         the silences in force
POST   /api/v1/silences                         SilenceRequest: 201 and the silence
DELETE /api/v1/silences/{silence}               ends a silence early

The same routes without /api/v1 (/alerts, /alerts/{device}/{rule}/ack, /silences) are the
paths of the previous release, kept for one release. Changes need a signed-in user (the
gate); the author is that user, a "by" in the body is accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fleet.daemon.alerts.text import alert_dict
from fleet.daemon.collector.http.models import (
    AckRequest,
    SilenceRequest,
    form_or_json,
    json_object,
    parse,
)
from fleet.daemon.collector.http.router import Refused, Request, Response, Router

Health = Callable[[], tuple[bool, dict[str, Any]]]
Audit = Callable[[str, str, str, str], None]
"""audit(user, action, target, detail): a change made, for the audit trail."""


def _no_audit(user: str, action: str, target: str, detail: str) -> None:
    return None


class SilenceApi(Protocol):
    def list_silences(self) -> list[dict[str, object]]: ...

    def add_silence(
        self,
        *,
        device: str | None,
        rule: str | None,
        reason: str,
        by: str,
        until_ms: int | None = None,
        hours: float | None = None,
    ) -> dict[str, object]: ...

    def remove_silence(self, silence_id: int) -> bool: ...


def collector_routes(
    *,
    health: Health,
    alerts: Callable[[], list[dict[str, object]]] | None,
    acknowledge: Callable[[str, str, str], None] | None,
    silences: SilenceApi | None = None,
    audit: Audit = _no_audit,
) -> Router:
    """The route table; a part the collector runs without (no alert engine) is not routed: 404.
    Every change made is handed to `audit` once it is taken."""
    router = Router()

    def healthz(request: Request) -> Response:
        ok, details = health()
        return Response.json(200 if ok else 503, details)

    router.get("/healthz", healthz)
    for prefix in ("/api/v1", ""):  # "": the previous release's paths, kept for one release
        if alerts is not None:
            router.get(f"{prefix}/alerts", lambda request: Response.json(200, alerts()))
        if acknowledge is not None:
            router.post(
                f"{prefix}/alerts/{{device:id}}/{{rule:id}}/ack", _ack_route(acknowledge, audit)
            )
        if silences is not None:
            _silence_routes(router, silences, prefix, audit)
    return router


def author(request: Request) -> str:
    """Who makes a change: the signed-in user, never a name in the body."""
    if not request.user:
        raise Refused(401, "sign in first: changes need a user")
    return request.user


def _ack_route(
    acknowledge: Callable[[str, str, str], None], audit: Audit
) -> Callable[[Request], Response]:
    def ack(request: Request) -> Response:
        device, rule = request.text("device"), request.text("rule")
        by = author(request)
        content_type = request.headers.get("Content-Type", "")
        parse(AckRequest, form_or_json(request.read_body() or b"{}", content_type))
        acknowledge(device, rule, by)
        audit(by, "acknowledge", f"{device}/{rule}", "")
        return Response.json(202, {"accepted": True, "device": device, "rule": rule, "by": by})

    return ack


def _silence_routes(router: Router, silences: SilenceApi, prefix: str, audit: Audit) -> None:
    def add(request: Request) -> Response:
        by = author(request)
        body = parse(SilenceRequest, json_object(request.read_body() or b"{}"))
        try:
            silence = silences.add_silence(
                device=body.device,
                rule=body.rule,
                reason=body.reason,
                by=by,
                until_ms=body.until_ms,
                hours=body.hours,
            )
        except ValueError as exc:  # judged against the alert engine's clock: past, too far
            raise Refused(400, str(exc)) from None
        target = "/".join(part or "*" for part in (body.device, body.rule))
        audit(by, "silence", target, f"{body.reason} until {silence.get('until')}")
        return Response.json(201, silence)

    def remove(request: Request) -> Response:
        by = author(request)
        silence_id = request.number("silence")
        if not silences.remove_silence(silence_id):
            raise Refused(404, f"no silence {silence_id}")
        audit(by, "end_silence", str(silence_id), "")
        return Response.json(200, {"removed": silence_id})

    router.get(f"{prefix}/silences", lambda request: Response.json(200, silences.list_silences()))
    router.post(f"{prefix}/silences", add)
    router.delete(f"{prefix}/silences/{{silence:int}}", remove)


def alerts_json(snapshots: list[Any]) -> list[dict[str, object]]:
    return [alert_dict(s) for s in snapshots]
