"""A WSGI app that sends each request to a live server over HTTP(S): the functional API tests, run
through WebTest as always, reach the service hosted by Apache mod_wsgi or behind HAProxy instead of
an app in the test process (HCC_LIVE=apache|replicas, see tests/functional/conftest.py)."""

from __future__ import annotations

import http.client
import ssl
import urllib.parse

# hop-by-hop headers (RFC 9110 7.6.1): the proxy's own connection's, not the answer's
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class LiveProxy:
    def __init__(self, base_url: str, cafile: str | None = None, timeout: float = 120.0):
        url = urllib.parse.urlsplit(base_url)
        self.https = url.scheme == "https"
        self.netloc = url.netloc
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.https else 80)
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cafile) if self.https else None

    def connection(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def __call__(self, environ, start_response):
        # PEP 3333 gives the path unescaped, as latin-1 text of its bytes: escape those bytes again
        raw_path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1")
        target = urllib.parse.quote(raw_path, safe="/;:@&=+$,!~*'()")
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
        headers = []
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").title()
                # WebTest's default Host names no real server; a test's own Host goes through as sent
                if name == "Host" and value in ("localhost:80", "localhost"):
                    value = self.netloc
                headers.append((name, value))
        if environ.get("CONTENT_TYPE"):
            headers.append(("Content-Type", environ["CONTENT_TYPE"]))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if length or environ["REQUEST_METHOD"] in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))
        connection = self.connection()
        try:
            connection.putrequest(
                environ["REQUEST_METHOD"], target, skip_host=True, skip_accept_encoding=True
            )
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders(body or None)
            response = connection.getresponse()
            data = response.read()
            answer = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            start_response(f"{response.status} {response.reason}", answer)
        finally:
            connection.close()
        return [data]
