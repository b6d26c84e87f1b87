"""Expiring download links: a URL that streams one file as its maker, with no Authorization header."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from cornice import Service
from cornice.validators import colander_body_validator
from pyramid.security import NO_PERMISSION_REQUIRED
from sqlalchemy import select

from .. import files
from ..api.docs import documented
from ..auth.crypto import new_token, open_credential, parse_token, seal_credential, token_hash, token_matches
from ..auth.sessions import audit
from ..clusters import MissingCredential, identity_for
from ..clusters.registry import UnknownCluster
from ..models import DownloadLink, UserSession
from ..models.meta import utcnow
from ..timefmt import JSON_SCHEMA as TIME
from ..timefmt import rfc3339
from .download import serve_file
from .errors import LinkGone
from .schemas import FILE_CONTENT, PathBody
from .views import checked_path

log = logging.getLogger(__name__)

file_links = Service(
    name="file_links", path="/api/v1/clusters/{cluster}/files/links", description="Make a download link"
)
download_link = Service(
    name="download_link", path="/api/v1/links/{token}", description="Download a file through a link"
)

LINK_OUT = {
    "type": "object",
    "required": ["url", "expires_at", "cluster", "path"],
    "properties": {
        "url": {"type": "string", "format": "uri", "description": "works without a token until expires_at"},
        "expires_at": TIME,
        "cluster": {"type": "string"},
        "path": {"type": "string"},
    },
}


@file_links.post(
    schema=PathBody(),
    validators=(colander_body_validator,),
    content_type="application/json",
)
@documented(201, 400, 401, 403, 404, 409, 413, 415, 502, 503, 504, response=LINK_OUT, tag="files")
def make_link(request):
    """A link that downloads the file as the caller, without a token, for hcc.files.link_ttl seconds.

    The link ends earlier if the caller's session ends (logout, expiry). Only a hash of its secret
    is stored; the session's cluster credential is sealed again under the link's own secret.
    """
    path = checked_path(request.validated["path"])
    access = request.cluster_access
    token, expires_at = create_download_link(request, access, path)
    request.response.status = 201
    return {
        "url": request.route_url(download_link.name, token=token),
        "expires_at": rfc3339(expires_at),
        "cluster": access.cluster.name,
        "path": path,
    }


def create_download_link(request, access, path: str) -> tuple[str, datetime]:
    """Record a link to ``path`` on the access's cluster as the caller: (its token, when it expires).

    The file must exist and be readable now. The link ends earlier if the caller's session ends.
    """
    registry = request.registry
    cluster = access.cluster
    session = request.identity
    # the file must exist and be readable now: a link to nothing is a mistake better told at once
    with access.sftp() as sftp:
        try:
            files.require_regular(sftp.stat(path), path)
            sftp.open(path, "rb").close()
        except OSError as exc:
            raise files.map_sftp_error(exc, path, "read") from None
    secret = registry.hcc_settings.auth.secret
    token = new_token()
    credential = request.caller_credential
    now = utcnow()
    # never beyond the session's hard end; its idle end is checked at each use
    expires_at = min(now + timedelta(seconds=registry.hcc_settings.files.link_ttl), session.row.expires_at)
    request.dbsession.add(
        DownloadLink(
            token_id=token.token_id,
            token_hash=token_hash(secret, token),
            session_id=session.row.id,
            username=session.username,
            cluster=cluster.name,
            path=path,
            created_at=now,
            expires_at=expires_at,
            credential=seal_credential(secret, token, credential) if credential else None,
        )
    )
    audit(request.dbsession, "download_link", session.username, request.client_address, "success", path)
    return str(token), expires_at


def _live_link(request, token_text: str) -> tuple[DownloadLink, dict | None]:
    """The link row and its opened credential, or LinkGone."""
    gone = LinkGone("no such download link, or it has expired")
    token = parse_token(token_text)
    if token is None:
        raise gone
    db = request.dbsession
    link = db.execute(
        select(DownloadLink).where(DownloadLink.token_id == token.token_id)
    ).scalar_one_or_none()
    secret = request.registry.hcc_settings.auth.secret
    if link is None or not token_matches(secret, token, link.token_hash):
        raise gone
    now = utcnow()
    if now >= link.expires_at:
        raise gone
    session = db.get(UserSession, link.session_id)
    sessions = request.registry.hcc_sessions
    if session is None or not sessions.is_live(session, now):
        raise gone
    credential = open_credential(secret, token, link.credential) if link.credential else None
    return link, credential


@download_link.get(permission=NO_PERMISSION_REQUIRED)
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
    tag="files",
    headers=("Range", "If-Range", "If-None-Match"),
    content=FILE_CONTENT,
)
def follow_link(request):
    """Download the linked file (no Authorization needed); Range and ETag work as for /files/content."""
    link, credential = _live_link(request, request.matchdict["token"])
    try:
        cluster = request.registry.hcc_clusters.get(link.cluster)
    except UnknownCluster:
        # the cluster left the configuration since the link was made
        raise LinkGone("no such download link, or it has expired") from None
    try:
        identity = identity_for(cluster, link.username, credential)
    except MissingCredential:
        # the cluster's identity mode changed since the link was made
        raise LinkGone("no such download link, or it has expired") from None
    return serve_file(request, request.access_as(cluster, identity), link.path)
