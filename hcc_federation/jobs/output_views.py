"""A job's stdout or stderr as the caller reads it: a byte range now, or followed while the job runs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import paramiko
from cornice import Service
from pyramid.response import Response

from .. import files
from ..api.docs import documented
from ..api.schemas import querystring
from ..clusters import ClusterAccess
from .errors import OutputNotFound, OutputUnknown
from .output import byte_window, follow_argv, read_argv
from .schemas import OUTPUT_CONTENT, OUTPUT_HEADERS, OutputQuerySchema
from .validation import FINISHED_STATES, validate_job_id
from .views import recorded_output, slurm_client

# One recv of a streamed body (as downloads) and the largest body read over the SFTP channel that
# the stat already opened; bigger ones are streamed by `dd` on an exec channel (files/download.py).
CHUNK = files.DEFAULT_CHUNK
SMALL_READ = 1024 * 1024

job_output = Service(
    name="cluster_job_output",
    path="/api/v1/clusters/{cluster}/jobs/{job_id}/output",
    description="One job's standard output or error",
)


class _Body:
    """A WSGI app_iter over a command's stdout; closing it closes the channel and frees its slot.

    ``deadline`` (monotonic) bounds a followed body: the remote loop stops itself at the configured
    maximum, and this stops waiting for it shortly after, whatever the cluster does. A body of a
    known ``length`` (announced in Content-Length) that ends short raises, so that the server cuts
    the connection rather than let a short body look complete.
    """

    def __init__(
        self,
        stack: contextlib.ExitStack,
        channel: paramiko.Channel,
        *,
        deadline: float | None = None,
        length: int | None = None,
    ):
        self._stack = stack
        self._channel = channel
        self._deadline = deadline
        self._length = length

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        while True:
            try:
                data = self._channel.recv(CHUNK)
            except TimeoutError:
                # a quiet job: nothing to send yet; keep waiting until the deadline
                if self._deadline is not None and time.monotonic() <= self._deadline:
                    continue
                data = b""
            if not data:
                break
            sent += len(data)
            yield data
        if self._length is not None and sent < self._length:
            raise OSError(f"the output ended {self._length - sent} bytes early while being sent")

    def close(self) -> None:
        self._stack.close()


def _stat_output(sftp: paramiko.SFTPClient, job_id: str, stream: str, path: str) -> int:
    """The output file's size, read as the caller: 404 naming the path, 403 if unreadable."""
    try:
        attr = sftp.stat(path)
    except OSError as exc:
        mapped = files.map_sftp_error(exc, path, "read")
        if isinstance(mapped, files.NoSuchPath):
            raise OutputNotFound(
                f"job {job_id} has no {stream} file (yet): {path}", job_id=job_id, path=path
            ) from None
        raise mapped from None
    files.require_regular(attr, path)
    try:
        # stat does not tell whether the caller may read (ACLs): fail with a status now, not mid-body
        sftp.open(path, "rb").close()
    except OSError as exc:
        raise files.map_sftp_error(exc, path, "read") from None
    return attr.st_size or 0


def serve_output(
    request,
    access: ClusterAccess,
    job: dict,
    stream: str,
    path: str,
    *,
    offset: int | None,
    tail: int | None,
    follow: bool,
) -> Response:
    """The bytes of ``path`` from the window asked for; followed on one exec channel while the job runs."""
    settings = request.registry.hcc_settings.jobs
    running = job["state"] not in FINISHED_STATES
    stack = contextlib.ExitStack()
    streaming = False
    try:
        with access.sftp() as sftp:
            size = _stat_output(sftp, job["id"], stream, path)
            start = byte_window(size, offset, tail)
            length = size - start
            small = request.method == "HEAD" or (not (follow and running) and length <= SMALL_READ)
            head = request.method == "HEAD"
            body = (
                [b"".join(files.read_chunks(sftp, path, start, length))]
                if small and length and not head
                else []
            )
        response = Response(
            headers={
                # no charset: the bytes are whatever the job printed
                "Content-Type": "text/plain",
                "X-Output-Size": str(size),
                "X-Output-Offset": str(start),
                "X-Job-State": job["state"],
                "X-Job-Running": "true" if running else "false",
                # never let a browser sniff what a job printed into something executable
                "X-Content-Type-Options": "nosniff",
            },
        )
        if small:
            response.app_iter = body
            response.content_length = length
        elif follow and running:
            interval = settings.output_poll_interval
            limit = settings.output_follow_max_seconds
            channel = stack.enter_context(access.stream(follow_argv(job["id"], path, start, interval, limit)))
            # wake up at least once per interval to notice the deadline while the job is quiet
            channel.settimeout(interval)
            deadline = time.monotonic() + limit + interval + access.cluster.settings.command_timeout
            # no Content-Length: the server sends the body chunked, each piece as it comes
            response.app_iter = _Body(stack, channel, deadline=deadline)
            streaming = True
        else:
            channel = stack.enter_context(access.stream(read_argv(path, start, length)))
            response.app_iter = _Body(stack, channel, length=length)
            response.content_length = length
            streaming = True
        return response
    finally:
        if not streaming:
            stack.close()


@job_output.get(**querystring(OutputQuerySchema()))
@documented(
    200,
    400,
    401,
    403,
    404,
    409,
    502,
    503,
    504,
    tag="jobs",
    content=OUTPUT_CONTENT,
    response_headers=OUTPUT_HEADERS,
)
def get_job_output(request):
    """The job's stdout or stderr as the caller may read it: all, from an offset, the tail, or followed."""
    access = request.cluster_access
    cluster = access.cluster
    # validated before any command is built: a hostile id never comes near argv
    job_id = validate_job_id(request.matchdict["job_id"])
    query = request.validated
    stream = query["stream"]
    job, paths = slurm_client(request, access).job_output(
        request.identity.username, job_id, recorded_output(request, cluster.name, job_id)
    )
    path = paths.stdout if stream == "stdout" else paths.stderr
    if path is None:
        raise OutputUnknown(
            f"where job {job_id} writes its {stream} is not known: {paths.reason}", job_id=job_id
        )
    return serve_output(
        request, access, job, stream, path, offset=query["offset"], tail=query["tail"], follow=query["follow"]
    )
