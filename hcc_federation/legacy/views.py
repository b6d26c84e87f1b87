"""The legacy hcc-jobs portal's routes under /{cluster}/myapp/: each translates to the calls /api/v1 makes.

No rule lives here: paths go through files.validate_path (after legacy.paths resolves $HOME...),
jobs through SlurmClient, logins and password changes through LoginService, links through the
download links of /api/v1. Errors keep the envelope and their status (the portal treats any non-2xx
as a failure); only login_user and change_password answer a refusal with 200, as the portal expects.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from datetime import timedelta

from cornice import Service
from cornice.validators import colander_body_validator
from pyramid.security import NO_PERMISSION_REQUIRED

from .. import files
from ..api.docs import documented
from ..api.me import profile_json
from ..auth.directory import (
    AccountLocked,
    DirectoryUnavailable,
    InvalidCredentials,
    PasswordRefused,
    WrongCurrentPassword,
)
from ..auth.policy import myauthorization_parts
from ..auth.sessions import TooManyAttempts
from ..errors import InvalidArgument
from ..files.links import create_download_link, follow_link
from ..files.schemas import FILE_CONTENT, UPLOAD_FORM
from ..files.views import _tree_runner, cluster_filesystems, store_form_files, upload_records
from ..jobs.views import record_submission, recorded_output, slurm_client
from ..models.meta import utcnow
from . import notebooks, schemas, service
from .paths import resolve_client_path

BASE = "/{cluster}/myapp/"
TAG = "legacy"
# the routes whose last parameter is the rest of the URL, slashes included (a path)
PATH_TAIL_ROUTES = ("get_directory", "get_file", "upload_file", "update_text", "get_download_link")
# where the portal opens a download link: relative to its server URL, which ends with /{cluster}
DOWNLOAD_ROUTE = "download"


def _service(route: str, suffix: str = "", description: str = "") -> Service:
    return Service(
        name=f"legacy_{route}",
        path=BASE + route + suffix,
        description=f"legacy hcc-jobs portal: {description or route}",
    )


login_user = _service("login_user", description="log in")
get_user = _service("get_user", description="the caller's profile")
change_password = _service("change_password", description="change the caller's password")
get_jobs = _service("get_jobs", "/{day}", "the caller's jobs since a day, as sacct lines")
get_job_detail = _service("get_job_detail", "/{job_id}/", "one job as sacct fields, top per node")
submit_job = _service("submit_job", description="submit a script on the cluster")
cancel_job = _service("cancel_job", description="cancel a job")
get_directory = _service("get_directory", "/{path:.*}", "a directory as ls -lhoQ text")
get_file = _service("get_file", "/{path:.*}", "a file, directory or symlink")
create_file = _service("create_file", description="create an empty file")
create_directory = _service("create_directory", description="create a directory")
update_file_directory = _service("update_file_directory", description="rename in a directory")
delete_file_directory = _service("delete_file_directory", description="delete a file or a tree")
upload_file = _service("upload_file", "/{path:.*}", "upload files into a directory")
update_text = _service("update_text", "/{path:.*}", "replace a text file's content")
get_download_link = _service("get_download_link", "/{path:.*}", "a download link")
download = _service(DOWNLOAD_ROUTE, "/{token}", "download through a link")
paste_file_directory = _service("paste_file_directory", description="copy into a directory")
get_jupyters = _service("get_jupyters", "/{label}", "the caller's notebooks")
start_jupyter = _service("start_jupyter", description="start a notebook")
stop_jupyter = _service("stop_jupyter", description="stop a notebook")

SERVICES = (
    login_user,
    get_user,
    change_password,
    get_jobs,
    get_job_detail,
    submit_job,
    cancel_job,
    get_directory,
    get_file,
    create_file,
    create_directory,
    update_file_directory,
    delete_file_directory,
    upload_file,
    update_text,
    get_download_link,
    download,
    paste_file_directory,
    get_jupyters,
    start_jupyter,
    stop_jupyter,
)

# what every remote route may answer besides 200 (the envelope): as the /api/v1 routes they use
REMOTE = (400, 401, 403, 404, 409, 502, 503, 504)


def _json(schema) -> dict:
    return {"schema": schema, "validators": (colander_body_validator,), "content_type": "application/json"}


def _cluster(request):
    """The cluster of the URL (404 if there is none of that name), for routes that run nothing on it."""
    return request.registry.hcc_clusters.get(request.matchdict["cluster"])


class _Paths:
    """Resolves the portal's paths for one request; the cluster's file systems are looked up once,
    and only if a path names one."""

    def __init__(self, request, access):
        self._request = request
        self._access = access
        self._known: dict[str, str] | None = None

    def filesystems(self) -> dict[str, str]:
        if self._known is None:
            found = cluster_filesystems(self._request, self._access)
            self._known = {fs["name"]: fs["path"] for fs in found}
        return self._known

    def __call__(self, given: str, name: str = "path") -> str:
        return resolve_client_path(given, self.filesystems, name=name)


def _child(directory: str, name: str, field: str) -> str:
    """A plain name inside a directory: no "/", not "." or ".." (the name may not climb out)."""
    if "/" in name or name in (".", "..") or "\x00" in name:
        raise InvalidArgument(f"{field} must be a plain name, not {name[:100]!r}", field=field)
    return files.validate_path(posixpath.join(directory, name), name=field)


# ------------------------------------------------------------------------------------ account


@login_user.post(permission=NO_PERMISSION_REQUIRED, **_json(schemas.LoginBody()))
@documented(200, 400, 404, 413, 415, 503, response=schemas.LOGIN_OUT, tag=TAG)
def log_in(request):
    """Log in; a refused login is 200 with user null and error saying why (the portal tests user)."""
    _cluster(request)
    body = request.validated
    try:
        session = request.registry.hcc_login.login(
            request.dbsession, body["username"], body["password"], request.client_address
        )
    except (InvalidCredentials, AccountLocked, TooManyAttempts, DirectoryUnavailable) as exc:
        return {"user": None, "error": exc.description}
    user = profile_json(request.registry.hcc_directory, session.username)
    return {"user": user, "session": {"uid": session.username, "token": str(session.token)}}


@get_user.get()
@documented(200, 401, 404, 503, response=schemas.USER_OUT, tag=TAG)
def get_profile(request):
    """The caller's profile and groups, from the directory."""
    _cluster(request)
    return profile_json(request.registry.hcc_directory, request.identity.username)


def _header_password(request) -> str | None:
    """The password part of MyAuthorization (base64 of the password the portal logged in with)."""
    parts = myauthorization_parts(request)
    if parts is None or not parts[1]:
        return None
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@change_password.post(**_json(schemas.NewPasswordBody()))
@documented(200, 401, 404, 429, 503, response=schemas.OK_OUT, tag=TAG)
def change_own_password(request):
    """Change the caller's password: allowed within hcc.legacy.password_change_window of the login,
    with the password of MyAuthorization as the current one (the directory checks it)."""
    _cluster(request)
    session = request.identity
    window = request.registry.hcc_settings.legacy.password_change_window
    if utcnow() - session.row.created_at > timedelta(seconds=window):
        minutes = window // 60
        return {
            "ok": False,
            "err": f"log in again first: a password is changed here only within {minutes} minutes of a login",
        }
    current = _header_password(request)
    if current is None:
        return {"ok": False, "err": "the MyAuthorization header carries no password (token$base64)"}
    try:
        request.registry.hcc_login.change_password(
            request.dbsession,
            session.username,
            current,
            request.validated["newPassword"],
            request.client_address,
        )
    except (WrongCurrentPassword, PasswordRefused, InvalidCredentials) as exc:
        return {"ok": False, "err": exc.description}
    return {"ok": True}


# --------------------------------------------------------------------------------------- jobs


@get_jobs.get()
@documented(200, *REMOTE, response=schemas.JOBS_OUT, tag=TAG)
def list_jobs(request):
    """The caller's jobs since a day, each as the line sacct -p -X -n prints."""
    access = request.cluster_access
    client = slurm_client(request, access)
    return service.job_table(client, request.identity.username, request.matchdict["day"])


@get_job_detail.get()
@documented(200, *REMOTE, response=schemas.JOB_DETAIL_OUT, tag=TAG)
def job_detail(request):
    """One of the caller's jobs as 15 sacct fields and, while running, top on each of its nodes; the
    paths of its stdout and stderr as extra keys."""
    access = request.cluster_access
    client = slurm_client(request, access)
    job_id = request.matchdict["job_id"]
    recorded = recorded_output(request, access.cluster.name, job_id)
    return service.job_detail(client, access.run, request.identity.username, job_id, recorded)


@submit_job.post(**_json(schemas.PathBody()))
@documented(200, *REMOTE, 413, 415, response=schemas.SUBMITTED_OUT, tag=TAG)
def submit(request):
    """Submit a batch script that is on the cluster; it runs in its own directory."""
    access = request.cluster_access
    path = _Paths(request, access)(request.validated["path"])
    client = slurm_client(request, access)
    job_id = client.submit_script_path(request.identity.username, path)
    record_submission(request, client, access.cluster.name, job_id, script_path=path)
    return {"ok": True, "result": f"Submitted batch job {job_id}"}


@cancel_job.post(**_json(schemas.JobIdBody()))
@documented(200, *REMOTE, 413, 415, response=schemas.OK_OUT, tag=TAG)
def cancel(request):
    """Cancel one of the caller's jobs (409 once it finished)."""
    access = request.cluster_access
    slurm_client(request, access).cancel_job(request.identity.username, request.validated["jobId"])
    return {"ok": True}


# -------------------------------------------------------------------------------------- files


@get_directory.get()
@documented(200, *REMOTE, response=schemas.FILE_OUT, tag=TAG)
def directory(request):
    """A directory (or a symlink to one) with its ls -lhoQ text."""
    access = request.cluster_access
    given = request.matchdict["path"]
    path = _Paths(request, access)(given)
    with access.sftp() as sftp:
        return service.listed_directory(sftp, access.run, given, path)


@get_file.get()
@documented(200, *REMOTE, response=schemas.FILE_OUT, tag=TAG)
def file(request):
    """A directory's listing, a text file's text, a symlink's target, or a binary file's type."""
    access = request.cluster_access
    given = request.matchdict["path"]
    path = _Paths(request, access)(given)
    with access.sftp() as sftp:
        return service.file_object(sftp, access.run, given, path)


@create_file.post(**_json(schemas.CreateFileBody()))
@documented(200, *REMOTE, 413, 415, 507, response=schemas.FILE_OUT, tag=TAG)
def new_file(request):
    """Create an empty file (touch); the parent directory."""
    access = request.cluster_access
    body = request.validated
    parent = _Paths(request, access)(body["path"])
    with access.sftp() as sftp:
        files.touch(sftp, _child(parent, body["filename"], "filename"), run=access.run)
        return service.listed_directory(sftp, access.run, body["path"], parent)


@create_directory.post(**_json(schemas.CreateDirectoryBody()))
@documented(200, *REMOTE, 413, 415, 507, response=schemas.FILE_OUT, tag=TAG)
def new_directory(request):
    """Create a directory; the parent directory."""
    access = request.cluster_access
    body = request.validated
    parent = _Paths(request, access)(body["path"])
    with access.sftp() as sftp:
        files.make_directory(sftp, _child(parent, body["dirname"], "dirname"), run=access.run)
        return service.listed_directory(sftp, access.run, body["path"], parent)


@update_file_directory.post(**_json(schemas.RenameBody()))
@documented(200, *REMOTE, 413, 415, 500, response=schemas.RENAMED_OUT, tag=TAG)
def rename(request):
    """Rename inside a directory, never over an existing name (409); the parent and the new object."""
    access = request.cluster_access
    body = request.validated
    parent = _Paths(request, access)(body["path"])
    new = _child(parent, body["newName"], "newName")
    with access.sftp() as sftp:
        files.move(sftp, _child(parent, body["oldName"], "oldName"), new, run=access.run)
        return {
            "parent": service.listed_directory(sftp, access.run, body["path"], parent),
            "child": service.file_object(
                sftp, access.run, posixpath.join(body["path"], body["newName"]), new
            ),
        }


@delete_file_directory.post(**_json(schemas.DeleteBody()))
@documented(200, *REMOTE, 413, 415, response=schemas.FILE_OUT, tag=TAG)
def delete(request):
    """Delete a file, a symlink or a whole directory tree; the parent directory."""
    access = request.cluster_access
    body = request.validated
    parent = _Paths(request, access)(body["path"])
    with access.sftp() as sftp:
        target = _child(parent, body["name"], "name")
        files.delete(sftp, target, recursive=True, run=_tree_runner(request, access))
        return service.listed_directory(sftp, access.run, body["path"], parent)


@upload_file.post()
@documented(200, *REMOTE, 413, 415, 507, response=schemas.FILE_OUT, tag=TAG, body=UPLOAD_FORM)
def upload(request):
    """Upload the form's file parts into a directory, each atomically, never over a file (409)."""
    access = request.cluster_access
    given = request.matchdict["path"]
    parent = _Paths(request, access)(given)
    store_form_files(request, access, parent, overwrite=False)
    with access.sftp() as sftp:
        return service.listed_directory(sftp, access.run, given, parent)


@update_text.post(**_json(schemas.TextBody()))
@documented(200, *REMOTE, 413, 415, 507, response=schemas.FILE_OUT, tag=TAG)
def save_text(request):
    """Replace (or create) a file with the text, atomically; the file."""
    access = request.cluster_access
    given = request.matchdict["path"]
    path = _Paths(request, access)(given)
    data = request.validated["text"].encode("utf-8")
    with access.sftp() as sftp:
        files.write_file(sftp, path, [data], run=access.run, journal=upload_records(request, access))
        return service.file_object(sftp, access.run, given, path)


@get_download_link.get()
@documented(200, *REMOTE, response=schemas.LINK_OUT, tag=TAG)
def download_link(request):
    """A link that downloads the file without the header, until hcc.files.link_ttl or the session ends."""
    access = request.cluster_access
    path = _Paths(request, access)(request.matchdict["path"])
    token, _ = create_download_link(request, access, path)
    # the portal opens <server> + link, its server URL being https://host/<cluster>
    return {"link": f"/myapp/{DOWNLOAD_ROUTE}/{token}"}


@download.get(permission=NO_PERMISSION_REQUIRED)
@documented(
    200,
    206,
    304,
    403,
    404,
    416,
    502,
    503,
    504,
    tag=TAG,
    headers=("Range", "If-Range", "If-None-Match"),
    content=FILE_CONTENT,
)
def download_file(request):
    """Download through a link of get_download_link (no header needed), as /api/v1/links/{token}."""
    return follow_link(request)


@paste_file_directory.post(**_json(schemas.PasteBody()))
@documented(200, *REMOTE, 413, 415, 507, response=schemas.FILE_OUT, tag=TAG)
def paste(request):
    """Copy a file or a tree into a directory, under its own name (never over one: 409); the directory."""
    access = request.cluster_access
    body = request.validated
    paths = _Paths(request, access)
    source = paths(body["src"], "src")
    dest = paths(body["dest"], "dest")
    if source == "/":
        raise InvalidArgument("cannot copy /", field="src")
    with access.sftp() as sftp:
        files.copy(
            sftp, _tree_runner(request, access), source, _child(dest, posixpath.basename(source), "src")
        )
        return service.listed_directory(sftp, access.run, body["dest"], dest)


# ---------------------------------------------------------------------------------- notebooks


def _notebook_access(request):
    """The cluster of the URL as the caller, and the notebooks service's store."""
    return request.cluster_access, request.registry.hcc_notebook_store


@get_jupyters.get()
@documented(200, 401, 403, 404, 502, 503, 504, response=schemas.JUPYTERS_OUT, tag=TAG)
def list_notebooks(request):
    """The caller's live notebooks on the cluster of the URL, each labelled as the portal asked
    (the label is the portal's own name for its backend, not necessarily a cluster's)."""
    access, store = _notebook_access(request)
    label = request.matchdict["label"]
    return {"jupyters": notebooks.list_jupyters(access, store, request.identity.username, label)}


@start_jupyter.post(**_json(schemas.LabelBody()))
@documented(200, *REMOTE, 413, 415, 429, response=schemas.JUPYTER_OUT, tag=TAG)
def start_notebook(request):
    """Start a notebook on the cluster of the URL in its default mode, labelled with the body's
    cluster; answered at once (the server answers its token some seconds later)."""
    access, store = _notebook_access(request)
    return notebooks.start_jupyter(
        access, store, request.identity.username, request.validated["cluster"], request.client_address
    )


@stop_jupyter.post(**_json(schemas.NotebookIdBody()))
@documented(200, *REMOTE, 413, 415, response=schemas.OK_OUT, tag=TAG)
def stop_notebook(request):
    """Stop one of the caller's notebooks on the cluster of the URL (404 for anyone else's)."""
    access, store = _notebook_access(request)
    notebooks.stop_jupyter(access, store, request.identity.username, request.validated["jupyterId"])
    return {"ok": True}
