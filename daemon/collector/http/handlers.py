"""The collector's routes: health, open alerts, acknowledgements and silences.

GET    /healthz                          200 when MQTT is up and the spool commits, else 503
GET    /alerts                           the firing alerts, as their retained JSON
POST   /alerts/{device}/{rule}/ack       AckRequest {"by"} (JSON or a form): stops the repeats
GET    /silences                         the silences in force
POST   /silences                         SilenceRequest: 201 and the silence
DELETE /silences/{silence}               ends a silence early
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
) -> Router:
    """The route table; a part the collector runs without (no alert engine) is not routed: 404."""
    router = Router()

    def healthz(request: Request) -> Response:
        ok, details = health()
        return Response.json(200 if ok else 503, details)

    router.get("/healthz", healthz)
    if alerts is not None:
        router.get("/alerts", lambda request: Response.json(200, alerts()))
    if acknowledge is not None:

        def ack(request: Request) -> Response:
            device, rule = request.text("device"), request.text("rule")
            content_type = request.headers.get("Content-Type", "")
            body = parse(AckRequest, form_or_json(request.read_body(), content_type))
            acknowledge(device, rule, body.by)
            return Response.json(
                202, {"accepted": True, "device": device, "rule": rule, "by": body.by}
            )

        router.post("/alerts/{device:id}/{rule:id}/ack", ack)
    if silences is not None:
        _silence_routes(router, silences)
    return router


def _silence_routes(router: Router, silences: SilenceApi) -> None:
    def add(request: Request) -> Response:
        body = parse(SilenceRequest, json_object(request.read_body() or b"{}"))
        try:
            silence = silences.add_silence(
                device=body.device,
                rule=body.rule,
                reason=body.reason,
                by=body.by,
                until_ms=body.until_ms,
                hours=body.hours,
            )
        except ValueError as exc:  # judged against the alert engine's clock: past, too far
            raise Refused(400, str(exc)) from None
        return Response.json(201, silence)

    def remove(request: Request) -> Response:
        silence_id = request.number("silence")
        if not silences.remove_silence(silence_id):
            raise Refused(404, f"no silence {silence_id}")
        return Response.json(200, {"removed": silence_id})

    router.get("/silences", lambda request: Response.json(200, silences.list_silences()))
    router.post("/silences", add)
    router.delete("/silences/{silence:int}", remove)


def alerts_json(snapshots: list[Any]) -> list[dict[str, object]]:
    return [alert_dict(s) for s in snapshots]
