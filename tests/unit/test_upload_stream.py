"""The request body of an upload, read in counted chunks whatever the server (waitress, mod_wsgi)."""

import inspect
import io
import threading
import time

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


def test_a_body_is_read_in_pieces_of_one_sftp_write():
    # each piece then goes out as one WRITE of OpenSSH's largest (261,120 bytes); 256 KiB pieces went
    # out as a full WRITE and a 1 KiB one each
    from hcc_federation.files.upload import UPLOAD_CHUNK

    assert UPLOAD_CHUNK == 261_120
    request = Request.blank("/", method="PUT", body=b"")
    request.environ["wsgi.input"] = CutOff(3 * UPLOAD_CHUNK + 10, OSError("never reached"))
    request.environ["wsgi.input_terminated"] = True
    del request.environ["CONTENT_LENGTH"]
    with pytest.raises(ClientDisconnected):  # CutOff raises after its bytes, as a cut-off client
        sizes = []
        for chunk in request_chunks(request, 10**9, "/tmp/x"):
            sizes.append(len(chunk))
    assert sizes == [UPLOAD_CHUNK] * 3 + [10]


def test_a_body_is_read_while_the_previous_chunk_is_written():
    from hcc_federation.files.upload import read_ahead

    read = []

    def source():
        for i in range(6):
            read.append(i)
            yield bytes([i])

    seen = []
    for data in read_ahead(source(), depth=2):
        time.sleep(0.05)  # the SFTP write of this chunk
        # the reader went on meanwhile: the next chunks are read before this one is done
        seen.append((data[0], len(read)))
    assert [i for i, _ in seen] == list(range(6))
    assert all(count >= min(i + 2, 6) for i, count in seen)


def test_the_readers_failure_comes_after_the_chunks_before_it():
    from hcc_federation.files.upload import read_ahead

    def source():
        yield b"a"
        yield b"b"
        raise ClientDisconnected("cut off")

    got = []
    with pytest.raises(ClientDisconnected):
        for data in read_ahead(source()):
            got.append(data)
    assert got == [b"a", b"b"]


def test_a_consumer_that_stops_stops_the_reader_before_it_returns():
    # the request's input must never be read after the view has answered
    from hcc_federation.files.upload import read_ahead

    state = {"read": 0, "closed": False}

    def source():
        try:
            while True:
                state["read"] += 1
                yield b"x" * 10
        finally:
            state["closed"] = True

    before = threading.active_count()
    stream = read_ahead(source(), depth=3)
    assert next(stream) == b"x" * 10
    stream.close()  # the cluster failed: write_file stops reading
    assert state["closed"] and threading.active_count() == before
    read = state["read"]
    time.sleep(0.1)
    assert state["read"] == read


def test_only_large_bodies_are_read_ahead():
    from hcc_federation.files.upload import UPLOAD_CHUNK, body_chunks

    small = Request.blank("/", method="PUT", body=b"x" * 1000)
    assert inspect.isgenerator(body := body_chunks(small, 10**9, "/tmp/x"))
    assert body.gi_code.co_name == "request_chunks" and b"".join(body) == b"x" * 1000
    large = Request.blank("/", method="PUT", body=b"y" * (3 * UPLOAD_CHUNK))
    body = body_chunks(large, 10**9, "/tmp/x")
    assert body.gi_code.co_name == "read_ahead" and b"".join(body) == b"y" * (3 * UPLOAD_CHUNK)
