"""A private InfluxDB 1.6 server and a small client for its v1 HTTP API (/query, /write)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

from tests.harness.base import ManagedServer, ServerError, find_binary
from tests.harness.process import free_port


class InfluxError(ServerError):
    """InfluxDB answered with an HTTP error or a statement error."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class InfluxServer(ManagedServer):
    """InfluxDB 1.6 (v1 HTTP API, no auth) with small caches so several instances fit."""

    name = "influxd"
    start_timeout = 30.0
    http_timeout: ClassVar[float] = 10.0

    def __init__(self, workdir: Path, port: int | None = None, *, rpc_port: int | None = None):
        super().__init__(workdir, port)
        # influxd also binds an RPC port (backup/restore); its default 8088
        # would collide between instances.
        self.rpc_port = rpc_port if rpc_port is not None else free_port()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "influxdb.conf"

    def _command(self) -> list[str]:
        binary = find_binary("influxd")
        self.config_path.write_text(self._config())
        return [binary, "run", "-config", str(self.config_path)]

    def _config(self) -> str:
        def q(value: object) -> str:
            return json.dumps(str(value))  # a TOML basic string

        return f"""\
# Debian's build reads reporting-enabled, upstream reads reporting-disabled.
reporting-enabled = false
reporting-disabled = true
bind-address = {q(f"{self.host}:{self.rpc_port}")}

[meta]
  dir = {q(self.workdir / "meta")}
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = {q(self.workdir / "data")}
  wal-dir = {q(self.workdir / "wal")}
  index-version = "inmem"
  query-log-enabled = false
  cache-max-memory-size = "64m"
  cache-snapshot-memory-size = "4m"
  max-concurrent-compactions = 1

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = {q(f"{self.host}:{self.port}")}
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false

[continuous_queries]
  log-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""

    def _is_ready(self) -> bool:
        try:
            status, _ = self._request("GET", "/ping", timeout=1)
        except OSError:
            return False
        return status == 204

    def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        target = f"{path}?{urlencode(params)}" if params else path
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=timeout if timeout is not None else self.http_timeout
        )
        try:
            conn.request(method, target, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _params(self, q: str, db: str | None, epoch: str | None) -> dict[str, str]:
        params = {"q": q}
        if db is not None:
            params["db"] = db
        if epoch is not None:
            params["epoch"] = epoch
        return params

    def _query_result(self, status: int, body: bytes, q: str) -> dict[str, Any]:
        text = body.decode(errors="replace")
        if status != 200:
            raise InfluxError(f"{q!r}: HTTP {status}: {text.strip()}", status, text)
        result: dict[str, Any] = json.loads(text)
        errors = [r["error"] for r in result.get("results", []) if "error" in r]
        if "error" in result:
            errors.insert(0, result["error"])
        if errors:
            raise InfluxError(f"{q!r}: {'; '.join(errors)}", status, text)
        return result

    def query(self, q: str, db: str | None = None, *, epoch: str = "ms") -> dict[str, Any]:
        """GET /query: the response JSON. Raises InfluxError on HTTP or statement errors."""
        status, body = self._request("GET", "/query", self._params(q, db, epoch))
        return self._query_result(status, body, q)

    def post_query(self, q: str, db: str | None = None) -> dict[str, Any]:
        """POST /query, for statements that change things (CREATE, DROP, SELECT INTO)."""
        form = urlencode(self._params(q, db, None)).encode()
        status, body = self._request(
            "POST",
            "/query",
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        return self._query_result(status, body, q)

    def create_database(self, name: str) -> None:
        self.post_query(f"CREATE DATABASE {quote_ident(name)}")

    def drop_database(self, name: str) -> None:
        self.post_query(f"DROP DATABASE {quote_ident(name)}")

    def databases(self) -> list[str]:
        return [row["name"] for row in self.rows("SHOW DATABASES")]

    def write(self, db: str, lines: str, precision: str = "ms", *, rp: str | None = None) -> None:
        """POST /write (line protocol). Raises InfluxError unless InfluxDB answers 204."""
        params = {"db": db, "precision": precision}
        if rp is not None:
            params["rp"] = rp
        status, body = self._request("POST", "/write", params, body=lines.encode())
        if status != 204:
            text = body.decode(errors="replace")
            raise InfluxError(f"write to {db}: HTTP {status}: {text.strip()}", status, text)

    def rows(self, q: str, db: str | None = None, *, epoch: str = "ms") -> list[dict[str, Any]]:
        """Every row of every series as {column: value}, with the series' tags merged in."""
        flat: list[dict[str, Any]] = []
        for result in self.query(q, db, epoch=epoch).get("results", []):
            for series in result.get("series", []):
                tags = series.get("tags") or {}
                columns = series["columns"]
                flat.extend(
                    {**tags, **dict(zip(columns, values, strict=True))}
                    for values in series.get("values", [])
                )
        return flat


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes, safe for any name."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
