"""The request body of an upload, read in counted chunks whatever the server (waitress, mod_wsgi)."""

import io

import pytest
from webob import Request
from webob.request import DisconnectionError

from hcc_federation.files import PayloadTooLarge
from hcc_federation.files.upload import ClientDisconnected, request_chunks


class CutOff(io.RawIOBase):
    """A server's input stream whose client went away after ``keep`` bytes, raising ``error``."""

    def __init__(self, keep: int, error: OSError):
        self.left, self.error = keep, error

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise self.error
        data = b"x" * min(n if n > 0 else self.left, self.left)
        self.left -= len(data)
        return data


@pytest.mark.parametrize(
    "error",
    [
        # what mod_wsgi raises in daemon mode when Apache could not read the rest from the client
        OSError(
            "Apache/mod_wsgi request data read error: Partial results are valid but processing is incomplete"
        ),
        DisconnectionError("the client disconnected"),  # WebOb's, under waitress
    ],
)
def test_a_cut_off_client_is_a_client_disconnect_not_a_cluster_failure(error):
    request = Request.blank("/", method="PUT", body=b"")
    request.environ["wsgi.input"] = CutOff(1000, error)
    request.environ["wsgi.input_terminated"] = True
    del request.environ["CONTENT_LENGTH"]
    with pytest.raises(ClientDisconnected, match="cut off"):
        for _ in request_chunks(request, 10_000, "/tmp/x"):
            pass


def test_a_chunked_body_is_capped_while_it_streams():
    request = Request.blank("/", method="PUT", body=b"")
    request.environ["wsgi.input"] = CutOff(10**9, OSError("never reached"))
    request.environ["wsgi.input_terminated"] = True
    del request.environ["CONTENT_LENGTH"]
    received = 0
    with pytest.raises(PayloadTooLarge):
        for chunk in request_chunks(request, 5 * 1024 * 1024, "/tmp/x"):
            received += len(chunk)
    assert received <= 5 * 1024 * 1024
