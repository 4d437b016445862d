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

from fleet.config.influx import InfluxSettings
from fleet.daemon.collector import rollup

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

    def query(self, statement: str) -> WriteResult:
        """Run statements that change data (the roll-up's backfill, backfill.py); any
        statement's error is a 400 with InfluxDB's words."""
        return self._query(statement)

    def _show(self, *statements: str) -> tuple[WriteResult, list[list[list[Any]]]]:
        """SHOW statements on our database in one request: the reply and, per statement,
        every row of the series of our database."""
        db = self._settings.database
        result = self._request(
            "GET", self._query_url, fields={"q": "; ".join(statements), "db": db}
        )
        rows: list[list[list[Any]]] = [[] for _ in statements]
        if not result.ok:
            return result, rows
        results = _results(result.body)
        errors = [str(r.get("error")) for r in results if r.get("error")]
        if errors:
            return WriteResult(400, "; ".join(errors)), rows
        for index, result_ in enumerate(results[: len(statements)]):
            for series in result_.get("series", []):
                # SHOW CONTINUOUS QUERIES lists every database, one series each.
                if series.get("name", db) == db:
                    rows[index].extend(series.get("values", []))
        return result, rows

    def _policy_statement(self, name: str, duration: str, policies: set[str], default: bool) -> str:
        duration = "INF" if duration.upper() == "INF" else duration
        on = f"{_quote_ident(name)} ON {_quote_ident(self._settings.database)}"
        if name in policies:
            statement = f"ALTER RETENTION POLICY {on} DURATION {duration}"
        else:
            statement = f"CREATE RETENTION POLICY {on} DURATION {duration} REPLICATION 1"
        return statement + (" DEFAULT" if default else "")

    def _rollup_statements(self, policies: set[str], existing: dict[str, str]) -> list[str]:
        """The downsampled policy and the continuous queries feeding it (see rollup.py)."""
        s = self._settings
        statements = [
            self._policy_statement(
                s.downsample_policy, s.downsample_retention, policies, default=False
            )
        ]
        wanted = rollup.continuous_queries(
            s.database,
            s.retention_policy,
            s.downsample_policy,
            s.downsample_every,
            s.downsample_for,
        )
        for cq in wanted:
            # The server echoes a CQ with its identifiers unquoted: equal then means unchanged.
            if existing.get(cq.name) == cq.statement.replace('"', ""):
                continue
            if cq.name in existing:
                # A CQ cannot be altered; one whose settings or fields (an upgrade) changed is
                # replaced.
                _LOG.info("replacing continuous query %s (its definition changed)", cq.name)
                db = _quote_ident(s.database)
                statements.append(f"DROP CONTINUOUS QUERY {_quote_ident(cq.name)} ON {db}")
            statements.append(cq.statement)
        return statements

    def bootstrap(self) -> WriteResult:
        """Create what is missing on 1.x: the database, the raw retention policy (the
        default), and the downsampled policy with its continuous queries. Three requests:
        create the database, look, then every change in one multi-statement query."""
        s = self._settings
        if not s.create_database:
            return WriteResult(204, "")
        result = self._query(f"CREATE DATABASE {_quote_ident(s.database)}")
        if not result.ok or not s.retention_policy:
            return result
        result, (policy_rows, cq_rows) = self._show(
            "SHOW RETENTION POLICIES", "SHOW CONTINUOUS QUERIES"
        )
        if not result.ok:
            return result
        policies = {str(row[0]) for row in policy_rows}
        statements = [self._policy_statement(s.retention_policy, s.retention, policies, True)]
        if s.downsample_policy:
            existing = {str(row[0]): str(row[1]) for row in cq_rows}
            statements += self._rollup_statements(policies, existing)
        return self._query("; ".join(statements))

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
