"""The app under a real waitress server with its thread pool (WebTest has none), and a small client.

Faults that take threads away (a hung database, a hung cluster) only show under a real server: this
runs one on a free loopback port in a thread of the test process, with ``threads`` worker threads.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

from webob import Request, Response
from webtest.http import StopableWSGIServer

from tests.helpers import ServedDocument, check_contract

OPENAPI_PATH = "/api/v1/openapi.json"


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]
    seconds: float

    @property
    def json(self):
        return json.loads(self.body)

    def is_envelope(self) -> bool:
        """The one error envelope: {"status": "error", "errors": [{location, name, description, code}]}."""
        try:
            body = self.json
        except ValueError:
            return False
        return (
            body.get("status") == "error"
            and bool(body.get("errors"))
            and all({"location", "name", "description", "code"} <= set(e) for e in body["errors"])
        )


class LiveServer:
    def __init__(self, server: StopableWSGIServer):
        self.server = server
        # the Pyramid app's registry: tests look at the service's own state (guards, bulkheads)
        self.registry = server.test_app.registry
        self.host = server.adj.host
        self.port = server.adj.port
        self.served: ServedDocument | None = None

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: bytes | dict | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Answer:
        """One request on a new connection; a client-side timeout is an Answer with status 0."""
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        started = time.monotonic()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            answer = Answer(response.status, data, dict(response.headers), time.monotonic() - started)
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            return Answer(0, repr(exc).encode(), {}, time.monotonic() - started)
        finally:
            connection.close()
        if method not in ("HEAD", "OPTIONS") and path != OPENAPI_PATH:
            self.check(method, path, answer)
        return answer

    def check(self, method: str, path: str, answer: Answer) -> None:
        """The answer as the OpenAPI document that this server serves says it may be."""
        if self.served is None:
            document = self.call("GET", OPENAPI_PATH)
            assert document.status == 200, document.body
            self.served = ServedDocument(document.json)
        response = Response(body=answer.body, status=answer.status, headerlist=list(answer.headers.items()))
        check_contract(self.served, Request.blank(path, method=method), response)

    def login(self, username: str, password: str) -> str:
        answer = self.call("POST", "/api/v1/sessions", body={"username": username, "password": password})
        assert answer.status == 201, answer.body
        return answer.json["token"]


@contextlib.contextmanager
def live_server(settings: dict, threads: int = 8, **waitress_options) -> Iterator[LiveServer]:
    """The app built from ``settings`` under waitress on 127.0.0.1:<free port>."""
    from hcc_federation import main

    app = main({}, **settings)
    server = StopableWSGIServer.create(
        app, host="127.0.0.1", threads=threads, expose_tracebacks=False, **waitress_options
    )
    # listening already (bound in the constructor): no wait() needed, and webtest's leaks a socket
    try:
        yield LiveServer(server)
    finally:
        server.shutdown()
