"""InfluxDB write backends: one HTTP request in, one `WriteResult` out.

`V1Sink` posts to `/write` (InfluxDB 1.x natively, 2.x through DBRP, 3.x Core
through its compatibility API) and bootstraps the database and retention
policy on 1.x. `V2Sink` goes through influxdb-client's write API for 2.x and
Cloud tokens. Neither retries: the writer owns retry policy, because only it
knows that a spooled batch is safe to keep.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3

from config.influx import InfluxSettings

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """status 0 means the server could not be reached (connection error, timeout)."""

    status: int
    body: str
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Sink(Protocol):
    def write(self, body: bytes) -> WriteResult: ...

    def bootstrap(self) -> WriteResult: ...

    def close(self) -> None: ...


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _results(body: str) -> list[dict[str, Any]]:
    """The "results" of a /query reply; an unreadable reply has none."""
    try:
        decoded = json.loads(body) if body else {}
    except ValueError:
        _LOG.warning("unexpected reply from InfluxDB /query: %.200s", body)
        return []
    results = decoded.get("results", []) if isinstance(decoded, dict) else []
    return [r for r in results if isinstance(r, dict)]


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class V1Sink:
    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        base = settings.url.rstrip("/")
        params = {"db": settings.database, "precision": "ms"}
        if settings.retention_policy:
            params["rp"] = settings.retention_policy
        self._write_url = f"{base}/write?{urlencode(params)}"
        self._query_url = f"{base}/query"
        self._headers: dict[str, str] = {}
        if settings.token is not None:
            self._headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
        elif settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else ""
            pair = f"{settings.username}:{password}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._http = urllib3.PoolManager(
            maxsize=2, retries=False, timeout=urllib3.Timeout(total=settings.timeout_s)
        )

    def _request(
        self, method: str, url: str, *, content_type: str | None = None, **kwargs: Any
    ) -> WriteResult:
        headers = dict(self._headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            response = self._http.request(method, url, headers=headers, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            return WriteResult(0, f"{type(exc).__name__}: {exc}")
        body = response.data.decode("utf-8", "replace")
        return WriteResult(
            response.status, body, parse_retry_after(response.headers.get("Retry-After"))
        )

    def write(self, body: bytes) -> WriteResult:
        return self._request(
            "POST", self._write_url, body=body, content_type="text/plain; charset=utf-8"
        )

    def _query(self, statement: str) -> WriteResult:
        result = self._request(
            "POST", self._query_url, fields={"q": statement}, encode_multipart=False
        )
        if result.ok:
            # /query reports statement errors with HTTP 200 and an "error" entry.
            errors = [str(r.get("error")) for r in _results(result.body) if r.get("error")]
            if errors:
                return WriteResult(400, "; ".join(errors))
        return result

    def bootstrap(self) -> WriteResult:
        """Create the database and retention policy if missing (InfluxDB 1.x)."""
        s = self._settings
        if not s.create_database:
            return WriteResult(204, "")
        db = _quote_ident(s.database)
        result = self._query(f"CREATE DATABASE {db}")
        if not result.ok or not s.retention_policy:
            return result
        duration = s.retention.upper() if s.retention.upper() == "INF" else s.retention
        rp = _quote_ident(s.retention_policy)
        exists = self._request(
            "GET", self._query_url, fields={"q": "SHOW RETENTION POLICIES", "db": s.database}
        )
        if not exists.ok:
            return exists
        names = {
            row[0]
            for result_ in _results(exists.body)
            for series in result_.get("series", [])
            for row in series.get("values", [])
        }
        verb = "ALTER" if s.retention_policy in names else "CREATE"
        statement = f"{verb} RETENTION POLICY {rp} ON {db} DURATION {duration}"
        statement += " REPLICATION 1 DEFAULT" if verb == "CREATE" else " DEFAULT"
        return self._query(statement)

    def close(self) -> None:
        self._http.clear()


class V2Sink:
    """InfluxDB 2.x / Cloud through influxdb-client's synchronous write API."""

    def __init__(self, settings: InfluxSettings) -> None:
        # Imported here: influxdb-client pulls in reactivex, which v1 users never need.
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        if settings.token is None or settings.org is None:
            raise ValueError("influx.api = v2 needs influx.token and influx.org")
        self._bucket = settings.database
        self._org = settings.org
        self._client = InfluxDBClient(
            url=settings.url,
            token=settings.token.get_secret_value(),
            org=settings.org,
            timeout=int(settings.timeout_s * 1000),
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, body: bytes) -> WriteResult:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(
                bucket=self._bucket,
                org=self._org,
                record=body,
                # The library annotates the parameter with its own class whose members are str.
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            raw = exc.body
            text = (
                raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or exc.reason)
            )
            headers: Any = exc.headers or {}
            return WriteResult(
                int(exc.status or 0), text, parse_retry_after(headers.get("Retry-After"))
            )
        except urllib3.exceptions.HTTPError as exc:
            return WriteResult(0, f"{type(exc).__name__}: {exc}")
        return WriteResult(204, "")

    def bootstrap(self) -> WriteResult:
        # Buckets are provisioned by whoever owns the 2.x organisation; the
        # collector's token normally may write but not create them.
        return WriteResult(204, "")

    def close(self) -> None:
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]


def make_sink(settings: InfluxSettings) -> Sink:
    return V2Sink(settings) if settings.api == "v2" else V1Sink(settings)
