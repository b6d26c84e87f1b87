"""The legacy hcc-jobs portal's API (/{cluster}/myapp/...) on the test bed, as the old client calls it."""

import base64
import os
import subprocess
import time
import urllib.parse
import uuid
from datetime import date

import ldap3
import pytest

from hcc_federation.legacy.commands import DETAIL_FIELDS, LIST_FIELDS
from tests.helpers import HOSTILE_NAMES, alice_work_dir, jobs_cancelled_afterwards, make_app, wait_for

CLUSTERS = ["alpha", "beta"]
ORIGIN = "https://portal.example.org"  # in the suite's hcc.api.cors_origins
SLEEP = "#!/bin/sh\n#SBATCH --time=2\n#SBATCH --mem=10M\nsleep 90\n"


def portal_login(app, users, name="alice", cluster="alpha") -> dict:
    """Log in as the portal does; its MyAuthorization header for every later call."""
    body = {"username": name, "password": users[name]["password"]}
    r = app.post_json(f"/{cluster}/myapp/login_user", body, status=200)
    assert r.json["session"]["uid"] == name
    password = base64.b64encode(users[name]["password"].encode()).decode()
    return {"MyAuthorization": f"{r.json['session']['token']}${password}"}


@pytest.fixture
def alice(app, users):
    return portal_login(app, users)


@pytest.fixture
def work_dir(users):
    with alice_work_dir(users, "hcc-legacy") as path:
        yield path


def as_alice(users, argv, **env) -> str:
    """argv run on this host as alice (the bed's clusters share it): what the old backend's su ran."""
    result = subprocess.run(
        ["runuser", "-u", "alice", "--", "env", *(f"{k}={v}" for k, v in env.items()), *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


def owned(users, path, name="alice"):
    """``path`` (made already) given to the user, a symlink itself rather than its target."""
    os.lchown(path, users[name]["uid"], -1)
    return path


def write(users, path, data: bytes | str):
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return owned(users, path)


# ------------------------------------------------------------------------------------ account


def test_one_login_serves_both_clusters(app, users):
    r = app.post_json("/alpha/myapp/login_user", {"username": "alice", "password": "alice-pw-1"}, status=200)
    assert r.json["user"]["username"] == "alice" and "groups" in r.json["user"]
    token = r.json["session"]["token"]
    headers = {"MyAuthorization": f"{token}$" + base64.b64encode(b"alice-pw-1").decode()}
    # the token made at alpha works under beta (certificate identity) and alpha (password identity)
    for cluster in CLUSTERS:
        assert app.get(f"/{cluster}/myapp/get_user", headers=headers, status=200).json == r.json["user"]
        home = app.get(f"/{cluster}/myapp/get_directory/$HOME", headers=headers, status=200).json
        assert (home["path"], home["name"], home["type"]) == ("$HOME", "$HOME", "directory")
        assert home["content"].startswith("total ")
    # the password part is not what authenticates: a wrong one still works, a wrong token does not
    wrong = {"MyAuthorization": f"{token}$" + base64.b64encode(b"nope").decode()}
    app.get("/beta/myapp/get_user", headers=wrong, status=200)
    r = app.get(
        "/beta/myapp/get_user", headers={"MyAuthorization": "x$" + wrong["MyAuthorization"]}, status=401
    )
    assert r.json["status"] == "error"


def test_a_refused_login_is_200_with_user_null(app, users):
    r = app.post_json("/beta/myapp/login_user", {"username": "alice", "password": "wrong"}, status=200)
    assert r.json["user"] is None and r.json["error"]
    r = app.post_json("/beta/myapp/login_user", {"username": "carol", "password": "carol-pw-1"}, status=200)
    assert r.json["user"] is None  # locked by ppolicy: said like a wrong password
    assert "session" not in r.json


def test_throttled_and_directory_down_logins_are_200_with_the_reason(app, settings):
    body = {"username": "bob", "password": "wrong"}
    for _ in range(5):  # hcc.auth.throttle_max_per_user
        r = app.post_json("/alpha/myapp/login_user", body, status=200)
        assert r.json["user"] is None
    r = app.post_json("/alpha/myapp/login_user", {**body, "password": "bob-pw-1"}, status=200)
    assert r.json["user"] is None and "too many" in r.json["error"].lower()
    # LDAP unreachable (nothing listens on port 9)
    down = make_app({**settings, "hcc.ldap.uri": "ldap://127.0.0.1:9", "hcc.ldap.timeout": "1"})
    r = down.post_json("/beta/myapp/login_user", {"username": "alice", "password": "alice-pw-1"}, status=200)
    assert r.json["user"] is None and "directory" in r.json["error"]


def test_myauthorization_is_taken_on_legacy_routes_only(app, alice):
    app.get("/api/v1/me", headers=alice, status=401)
    r = app.get("/alpha/myapp/get_user", status=401)
    assert r.json["errors"][0]["code"] == "unauthenticated"
    # a bearer token works on the legacy routes too
    token = alice["MyAuthorization"].split("$")[0]
    app.get("/alpha/myapp/get_user", headers={"Authorization": f"Bearer {token}"}, status=200)


def test_an_unknown_cluster_is_404(app, users, alice):
    app.get("/gamma/myapp/get_user", headers=alice, status=404)
    r = app.post_json("/gamma/myapp/login_user", {"username": "alice", "password": "alice-pw-1"}, status=404)
    assert r.json["errors"][0]["code"] == "cluster_not_found"


def test_cors_preflight_allows_myauthorization(app):
    r = app.options(
        "/beta/myapp/get_file/$HOME",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "myauthorization, content-type",
        },
        status=204,
    )
    allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"myauthorization", "content-type"} <= allowed
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    app.options(
        "/beta/myapp/get_user",
        headers={"Origin": "https://evil.example.org", "Access-Control-Request-Method": "GET"},
        status=403,
    )


@pytest.fixture
def bob_password_restored(endpoints, users):
    """Whatever a test does to bob's LDAP password, put it back."""
    yield
    ldap = endpoints["ldap"]
    host, port = ldap["uri"].removeprefix("ldap://").rsplit(":", 1)
    server = ldap3.Server(host, port=int(port))
    conn = ldap3.Connection(server, ldap["admin_dn"], ldap["admin_password"], auto_bind=True)
    conn.extend.standard.modify_password(user=users["bob"]["dn"], new_password=users["bob"]["password"])
    conn.unbind()


def test_change_password_takes_the_current_one_from_myauthorization(app, users, bob_password_restored):
    bob = portal_login(app, users, "bob", "beta")
    token = bob["MyAuthorization"].split("$")[0]
    # a wrong password in the header: the directory's reason, nothing changed
    wrong = {"MyAuthorization": f"{token}$" + base64.b64encode(b"not-bobs").decode()}
    r = app.post_json(
        "/beta/myapp/change_password", {"newPassword": "bob-new-pw-3"}, headers=wrong, status=200
    )
    assert r.json == {"ok": False, "err": "the current password is wrong"}
    garbled = {"MyAuthorization": f"{token}$%%%"}
    r = app.post_json(
        "/beta/myapp/change_password", {"newPassword": "bob-new-pw-3"}, headers=garbled, status=200
    )
    assert r.json["ok"] is False and "MyAuthorization" in r.json["err"]
    # the right one: changed, and (as PUT /api/v1/me/password) every session of bob's ends
    r = app.post_json("/beta/myapp/change_password", {"newPassword": "bob-new-pw-3"}, headers=bob, status=200)
    assert r.json == {"ok": True}
    app.get("/beta/myapp/get_user", headers=bob, status=401)
    r = app.post_json("/alpha/myapp/login_user", {"username": "bob", "password": "bob-new-pw-3"}, status=200)
    assert r.json["user"]["username"] == "bob"


def test_change_password_needs_a_recent_login(settings, users):
    """hcc.legacy.password_change_window: past it (here 0 s), the right password changes nothing."""
    app = make_app({**settings, "hcc.legacy.password_change_window": "0"})
    bob = portal_login(app, users, "bob")
    time.sleep(1.1)
    r = app.post_json(
        "/alpha/myapp/change_password", {"newPassword": "bob-new-pw-4"}, headers=bob, status=200
    )
    assert r.json["ok"] is False and "log in again" in r.json["err"]
    # bob's password is unchanged
    app.post_json(
        "/alpha/myapp/login_user", {"username": "bob", "password": users["bob"]["password"]}, status=200
    )
    r = app.post_json("/alpha/myapp/login_user", {"username": "bob", "password": "bob-new-pw-4"}, status=200)
    assert r.json["user"] is None


# -------------------------------------------------------------------------------------- files

TRICKY = ["sp ace  ", 'quo"te', "it's", "ünï ☃", "-rf"]


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_listing_is_ls_lhoQ_to_the_byte(app, users, alice, work_dir, cluster):
    for name in TRICKY:
        write(users, work_dir / name, "x" * 3000)
    (work_dir / "a dir").mkdir()
    owned(users, work_dir / "a dir")
    os.symlink("sp ace  ", work_dir / "link one")
    owned(users, work_dir / "link one")
    expected = as_alice(users, ["ls", "-lhoQ", "--", str(work_dir)], LC_ALL="C.UTF-8").strip()

    # absolute, as the portal writes it after the route name (so the URL has "//")
    r = app.get(f"/{cluster}/myapp/get_directory/{work_dir}", headers=alice, status=200)
    assert r.json == {"path": str(work_dir), "name": work_dir.name, "type": "directory", "content": expected}
    # ...and through $HOME, kept as given
    given = f"$HOME/{work_dir.name}"
    r = app.get(f"/{cluster}/myapp/get_file/{given}", headers=alice, status=200)
    assert r.json == {"path": given, "name": work_dir.name, "type": "directory", "content": expected}

    # what the portal's Directory.vue reads from it
    rows = r.json["content"].split("\n")
    assert rows.pop(0).startswith("total ")
    names = {row.split('"')[1] for row in rows}
    assert {"sp ace  ", "it's", "ünï ☃", "-rf", "a dir", "link one"} <= names
    [link] = [row for row in rows if '"link one"' in row]
    assert link.startswith("l") and link.endswith('"link one" -> "sp ace  "')
    [spaced] = [row for row in rows if '"sp ace  "' in row and not row.startswith("l")]
    assert spaced.split()[3] == "3.0K"  # size, -h
    assert '"quo\\"te"' in r.json["content"]  # ls -Q escapes the quote, as the old backend's did


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_file_objects(app, users, alice, work_dir, cluster):
    write(users, work_dir / "notes.txt", "line 1\nünï ☃\n\n")
    write(users, work_dir / "blob.bin", bytes(range(256)))
    os.symlink("notes.txt", work_dir / "to notes")
    owned(users, work_dir / "to notes")
    base = f"/{cluster}/myapp/get_file/{work_dir}"
    r = app.get(f"{base}/notes.txt", headers=alice, status=200)
    assert r.json == {
        "path": f"{work_dir}/notes.txt",
        "name": "notes.txt",
        "type": "text file",
        "content": "line 1\nünï ☃\n\n",
    }
    assert app.get(f"{base}/blob.bin", headers=alice, status=200).json["content"] is None
    assert app.get(f"{base}/blob.bin", headers=alice, status=200).json["type"] == "binary file"
    r = app.get(f"{base}/to notes", headers=alice, status=200)
    assert (r.json["type"], r.json["content"]) == ("symbolic link", "symbolic link to notes.txt")
    r = app.get(f"{base}/none", headers=alice, status=404)
    assert r.json["errors"][0]["code"] == "no_such_path"
    # a file is not a directory
    r = app.get(f"/{cluster}/myapp/get_directory/{work_dir}/notes.txt", headers=alice, status=409)
    assert r.json["errors"][0]["code"] == "not_a_directory"


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_file_operations(app, users, alice, work_dir, cluster):
    base = f"/{cluster}/myapp"
    where = f"$HOME/{work_dir.name}"

    def post(route, body, status=200):
        return app.post_json(f"{base}/{route}", body, headers=alice, status=status)

    parent = post("create_directory", {"path": where, "dirname": "d 1"}).json
    assert parent["path"] == where and parent["type"] == "directory" and '"d 1"' in parent["content"]
    assert (work_dir / "d 1").is_dir()
    post("create_file", {"path": f"{where}/d 1", "filename": "new.txt"})
    assert (work_dir / "d 1" / "new.txt").read_bytes() == b""

    r = app.post_json(
        f"{base}/update_text/{where}/d 1/new.txt", {"text": "héllo\n"}, headers=alice, status=200
    )
    assert r.json == {
        "path": f"{where}/d 1/new.txt",
        "name": "new.txt",
        "type": "text file",
        "content": "héllo\n",
    }
    assert (work_dir / "d 1" / "new.txt").read_text() == "héllo\n"

    # rename, never over an existing name
    post("create_file", {"path": f"{where}/d 1", "filename": "other.txt"})
    r = post(
        "update_file_directory", {"path": f"{where}/d 1", "oldName": "new.txt", "newName": "other.txt"}, 409
    )
    assert r.json["errors"][0]["code"] == "already_exists"
    r = post(
        "update_file_directory", {"path": f"{where}/d 1", "oldName": "new.txt", "newName": "ren amed.txt"}
    )
    assert r.json["parent"]["path"] == f"{where}/d 1"
    assert r.json["child"] == {
        "path": f"{where}/d 1/ren amed.txt",
        "name": "ren amed.txt",
        "type": "text file",
        "content": "héllo\n",
    }

    # paste copies into a directory under the source's own name
    post("create_directory", {"path": where, "dirname": "d 2"})
    r = post("paste_file_directory", {"src": f"{where}/d 1", "dest": f"{where}/d 2"})
    assert r.json["path"] == f"{where}/d 2" and '"d 1"' in r.json["content"]
    assert (work_dir / "d 2" / "d 1" / "ren amed.txt").read_text() == "héllo\n"
    post("paste_file_directory", {"src": f"{where}/d 1", "dest": f"{where}/d 2"}, 409)

    # upload into a directory named in the URL
    r = app.post(
        f"{base}/upload_file/{where}/d 2",
        upload_files=[("file", "up loaded.txt", b"uploaded bytes")],
        headers=alice,
        status=200,
    )
    assert '"up loaded.txt"' in r.json["content"]
    assert (work_dir / "d 2" / "up loaded.txt").read_bytes() == b"uploaded bytes"

    # a download link relative to the portal's server URL (https://host/<cluster>), no header needed
    r = app.get(f"{base}/get_download_link/{where}/d 2/up loaded.txt", headers=alice, status=200)
    link = r.json["link"]
    assert link.startswith("/myapp/download/")
    assert app.get(f"/{cluster}" + link, status=200).body == b"uploaded bytes"

    # delete is recursive
    r = post("delete_file_directory", {"path": where, "name": "d 2"})
    assert '"d 2"' not in r.json["content"] and '"d 1"' in r.json["content"]
    assert not (work_dir / "d 2").exists()


def test_paths_resolve_through_the_named_file_systems(app, users, alice, endpoints):
    # the suite's clusters have HOME=$HOME SCRATCH=/tmp/$USER; $COMMON is not one of them
    r = app.get("/beta/myapp/get_file/$COMMON/x", headers=alice, status=400)
    assert (
        "$COMMON" in r.json["errors"][0]["description"] and "$SCRATCH" in r.json["errors"][0]["description"]
    )
    r = app.get("/beta/myapp/get_file/${HOME}", headers=alice, status=200)
    assert r.json["path"] == "${HOME}" and r.json["type"] == "directory"
    # a relative path means nothing to this service
    r = app.get("/beta/myapp/get_file/home/alice", headers=alice, status=400)
    assert r.json["errors"][0]["code"] == "invalid_argument"


PWNED = "/tmp/pwned"


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_hostile_paths_stay_literal(app, users, alice, work_dir, cluster):
    base = f"/{cluster}/myapp"
    where = f"$HOME/{work_dir.name}"
    for name in HOSTILE_NAMES:
        if name in ("new\nline",):
            continue  # a URL path cannot carry it; the body can (below)
        post = app.post_json(
            f"{base}/create_file", {"path": where, "filename": name}, headers=alice, status=200
        )
        assert (work_dir / name).is_file(), name
        # as a browser sends it: UTF-8 percent-encoded (a "?" the old portal would leave raw)
        r = app.get(f"{base}/get_file/{where}/{urllib.parse.quote(name)}", headers=alice, status=200)
        assert r.json["name"] == name and r.json["type"] == "text file"
    assert post.json["content"].startswith("total ")
    app.post_json(f"{base}/create_file", {"path": where, "filename": "new\nline"}, headers=alice, status=200)
    assert (work_dir / "new\nline").is_file()
    # a $ past the first component is a literal character, never a shell's
    r = app.get(f"{base}/get_file/{where}/$(touch {PWNED})", headers=alice, status=404)
    assert r.json["errors"][0]["code"] == "no_such_path"
    app.get(f"{base}/get_file/$(touch {PWNED})", headers=alice, status=400)
    app.get(f"{base}/get_file/`touch {PWNED}`", headers=alice, status=400)
    # names may not climb out of their directory
    for field, body in (
        ("filename", {"path": where, "filename": "../escaped"}),
        ("filename", {"path": where, "filename": ".."}),
        ("dirname", {"path": where, "dirname": "a/b"}),
    ):
        route = "create_file" if field == "filename" else "create_directory"
        r = app.post_json(f"{base}/{route}", body, headers=alice, status=400)
        assert r.json["errors"][0]["name"] == field
    r = app.post_json(
        f"{base}/delete_file_directory",
        {"path": where, "name": "../" + work_dir.name},
        headers=alice,
        status=400,
    )
    assert work_dir.is_dir()
    # NUL and paths that are not UTF-8
    app.get(f"{base}/get_file/{where}/a%00b", headers=alice, status=400)
    app.get(f"{base}/get_file/{where}/%ff", headers=alice, status=400)
    assert not os.path.exists(PWNED)


# --------------------------------------------------------------------------------------- jobs


@pytest.fixture
def started(clusters):
    with jobs_cancelled_afterwards(clusters) as jobs:
        yield jobs


def sacct_as_root(clusters, cluster, argv) -> str:
    env = {**os.environ, "SLURM_CONF": clusters[cluster]["slurm_conf"]}
    env.pop("SLURM_TIME_FORMAT", None)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=True).stdout


@pytest.mark.slow
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_job_lifecycle(app, users, clusters, alice, work_dir, started, database_url, cluster):
    if database_url.startswith("mysql"):
        pytest.skip("Slurm-heavy: runs on SQLite only (the registry row is the /api/v1 code's)")
    base = f"/{cluster}/myapp"
    # a separate stderr named after the job (%x: the script's name, with its space) and its id
    script_text = SLEEP.replace("\n", '\n#SBATCH --error="err %x-%j.txt"\n', 1)
    script = write(users, work_dir / f"job {uuid.uuid4().hex[:6]}.sh", script_text)
    r = app.post_json(f"{base}/submit_job", {"path": f"$HOME/{work_dir.name}/{script.name}"}, headers=alice)
    assert r.json["ok"] is True and r.json["result"].startswith("Submitted batch job ")
    job_id = r.json["result"].rsplit(" ", 1)[1]
    started.append((cluster, job_id))

    # the detail while running: 15 sacct fields and top on the job's node
    def running():
        detail = app.get(f"{base}/get_job_detail/{job_id}/", headers=alice, status=200).json
        return detail if detail["values"][5] == "RUNNING" and detail["nodes"] else None

    detail = wait_for(running, timeout=90)
    assert detail["fields"] == list(DETAIL_FIELDS) and len(detail["values"]) == 15
    assert detail["values"][0] == job_id and detail["values"][4] == "alice"
    assert isinstance(detail["timestamp"], float) and abs(detail["timestamp"] - time.time()) < 60
    [(node, top)] = detail["nodes"].items()
    assert node == clusters[cluster]["node"]
    assert top.startswith("top - ") and "PID USER" in top and "sleep" in top
    # as sacct prints it for the old backend, byte for byte (but for the running Elapsed)
    line = sacct_as_root(
        clusters, cluster, ["sacct", "-j", job_id, "-p", "-X", "-n", "-o", ",".join(DETAIL_FIELDS)]
    ).strip()
    expected = line.split("|")[:-1]
    assert detail["values"][:8] == expected[:8] and detail["values"][9:] == expected[9:]
    # issue 16's output paths as extra keys: sbatch's default stdout in the job's directory
    assert detail["stdout"] == f"{work_dir}/slurm-{job_id}.out"
    assert detail["stderr"] == f"{work_dir}/err {script.name}-{job_id}.txt"
    assert os.path.isfile(detail["stdout"]) and os.path.isfile(detail["stderr"])  # where Slurm writes

    # the list: one sacct -p line per job
    day = date.today().isoformat()
    jobs = app.get(f"{base}/get_jobs/{day}", headers=alice, status=200).json
    assert jobs["fields"] == list(LIST_FIELDS)
    [mine] = [v for v in jobs["values"] if v.startswith(f"{job_id}|")]
    assert mine.startswith(f"{job_id}|{script.name}|RUNNING|") and mine.endswith("|")
    listed = sacct_as_root(
        clusters, cluster, ["sacct", "-u", "alice", "-S", day, "-p", "-X", "-n", "-o", ",".join(LIST_FIELDS)]
    )
    [theirs] = [v for v in listed.strip().split("\n") if v.startswith(f"{job_id}|")]
    assert mine.rsplit("|", 3)[0] == theirs.rsplit("|", 3)[0]  # all but Elapsed and AllocNodes
    assert mine.split("|")[5] == theirs.split("|")[5]  # AllocNodes

    # another user's job is refused
    bob = portal_login(app, users, "bob", cluster)
    r = app.get(f"{base}/get_job_detail/{job_id}/", headers=bob, status=403)
    assert r.json["errors"][0]["code"] == "job_forbidden"
    app.post_json(f"{base}/cancel_job", {"jobId": job_id}, headers=bob, status=403)

    # cancel, then a finished job cannot be cancelled again
    assert app.post_json(f"{base}/cancel_job", {"jobId": job_id}, headers=alice, status=200).json == {
        "ok": True
    }

    def ended():
        detail = app.get(f"{base}/get_job_detail/{job_id}/", headers=alice, status=200).json
        return detail if detail["values"][5].startswith("CANCELLED") else None

    assert wait_for(ended, timeout=30)["nodes"] == {}
    app.post_json(f"{base}/cancel_job", {"jobId": job_id}, headers=alice, status=409)


def test_job_arguments_are_checked(app, alice):
    app.get("/alpha/myapp/get_jobs/yesterday", headers=alice, status=400)
    app.get("/alpha/myapp/get_job_detail/1;id/", headers=alice, status=400)
    app.post_json("/alpha/myapp/cancel_job", {"jobId": "$(id)"}, headers=alice, status=400)
    r = app.post_json("/alpha/myapp/submit_job", {"path": "relative.sh"}, headers=alice, status=400)
    assert r.json["errors"][0]["name"] == "path"
    # a day with no jobs: no lines (the old backend answered [""])
    assert app.get("/beta/myapp/get_jobs/2099-01-01", headers=alice, status=200).json["values"] == []


# ---------------------------------------------------------------------------------- notebooks


def test_notebook_routes_answer_as_the_notebooks_service_where_notebooks_are_off(app, alice):
    """(tests/functional/test_legacy_notebooks.py starts real ones.) This suite enables no notebook mode."""
    assert app.get("/beta/myapp/get_jupyters/rhino", headers=alice, status=200).json == {"jupyters": []}
    r = app.post_json("/beta/myapp/start_jupyter", {"cluster": "rhino"}, headers=alice, status=400)
    assert "not enabled on cluster beta" in r.json["errors"][0]["description"]
    r = app.post_json("/beta/myapp/stop_jupyter", {"jupyterId": "1"}, headers=alice, status=404)
    assert r.json["errors"][0]["code"] == "notebook_not_found"
    app.get("/beta/myapp/get_jupyters/rhino", status=401)
    app.get("/nowhere/myapp/get_jupyters/rhino", headers=alice, status=404)
