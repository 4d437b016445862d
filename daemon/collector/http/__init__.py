"""The collector's HTTP API: a route table over the standard library's threaded server.

    router.py    method + path pattern -> handler; typed path parameters; 404 / 405 + Allow
    models.py    request bodies as strict pydantic models; refusals that name the field
    handlers.py  the collector's routes (health, alerts, acknowledgements, silences)
    auth.py      password hashes (scrypt), users, signed session cookies, login throttling
    gate.py      in front of the router: Host, who asks (session or Basic), CSRF, Origin
    server.py    the listener: connection cap, request deadline, TLS, bounded bodies, JSON
    counters.py  the listener's counts for /metrics

It binds `http.bind` (127.0.0.1:8080 by default: the station's own machine). Every change
needs a signed-in user; reading is open unless `http.public_read` is false (gate.py).

Why our own small router on `http.server.ThreadingHTTPServer`, and not a framework
(Starlette + uvicorn was the candidate; weighed for the readiness board of issue 10):

- Memory. The collector's RSS target is 60 MB and it already misses it by 3-6 MB at
  1,000 msg/s (README, Performance). Importing Starlette + uvicorn (with h11 and anyio)
  into the collector adds 3.3 MB on its own (measured: 47.0 -> 50.3 MB), before an event
  loop and its buffers; the router here adds nothing the process had not loaded.
- Thread model. The collector is threads (ingest, writer, alerts, paho's loop). An ASGI
  app would run one asyncio loop beside them and hand every call into the alert engine or
  SQLite to a thread pool anyway; here each connection has its thread and calls the engine
  directly, as the rest of the collector does.
- Hardening. The stdlib server is what tests/fuzz/test_http.py has hammered (lying
  Content-Length, half-sent requests, odd request lines). uvicorn has no timeout for
  receiving a request's head (uvicorn issue #157, open since 2018), so slowloris
  protection would have to be built around it just as here.
- Licences would have allowed it (BSD-3 / MIT), and a dependency is not the obstacle.

What the board needs and how it fits (issue 10): pages and static files are routes
returning `Response(status, bytes, content_type)`, read with `importlib.resources`;
updates by polling the JSON API (cheap: one short request per screen every few seconds;
a server-sent events stream would hold one thread per open screen, fine behind a cap on
connections); logins with the standard library alone (`hashlib.scrypt` for passwords,
`hmac`-signed session cookies, `secrets` for CSRF tokens) as a check in front of
`Router.dispatch` (gate.py); TLS by wrapping each accepted socket on its own thread
(`ssl.SSLContext`); a cap on concurrent connections and an absolute deadline for a
request's head and body, checked before every read (server.py).
"""

from fleet.daemon.collector.http.counters import HttpCounters
from fleet.daemon.collector.http.handlers import SilenceApi, alerts_json, collector_routes
from fleet.daemon.collector.http.router import Refused, Request, Response, Router
from fleet.daemon.collector.http.server import MAX_BODY, HttpApi

__all__ = [
    "MAX_BODY",
    "HttpApi",
    "HttpCounters",
    "Refused",
    "Request",
    "Response",
    "Router",
    "SilenceApi",
    "alerts_json",
    "collector_routes",
]
