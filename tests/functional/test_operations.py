"""What an operator runs: hcc-cleanup, alembic from production.ini, the mod_wsgi entry."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from hcc_federation.models import LoginAttempt, UserSession
from hcc_federation.models.meta import utcnow
from hcc_federation.scripts.cleanup import cleanup, main
from hcc_federation.settings import parse_settings

ROOT = Path(__file__).resolve().parents[2]


def _token_id(headers: dict) -> str:
    return headers["Authorization"].split()[1].split(".")[0]


def test_cleanup_deletes_dead_sessions_and_old_attempts_only(app, login, settings, database_url):
    live, revoked, idle = login("alice"), login("alice"), login("bob")
    app.delete("/api/v1/sessions/current", headers=revoked, status=204)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE sessions SET last_seen_at = :t WHERE token_id = :id"),
            {"t": utcnow() - timedelta(days=2), "id": _token_id(idle)},
        )
        conn.execute(
            text(
                "INSERT INTO login_attempts (username, client_addr, attempted_at, success)"
                " VALUES (:u, :a, :t, :s)"
            ),
            {"u": "old", "a": "127.0.0.1", "t": utcnow() - timedelta(days=3), "s": False},
        )
        conn.execute(
            text("INSERT INTO throttle_keys (`key`, last_attempt_at) VALUES ('user:old', :t)"),
            {"t": utcnow() - timedelta(days=3)},
        )
    with Session(engine) as db, db.begin():
        report = cleanup(db, parse_settings(settings).auth)
    with Session(engine) as db:
        ids = set(db.scalars(select(UserSession.token_id)))
        old_attempts = db.scalar(
            select(func.count()).select_from(LoginAttempt).where(LoginAttempt.username == "old")
        )
    engine.dispose()
    assert _token_id(live) in ids
    assert _token_id(revoked) not in ids and _token_id(idle) not in ids
    assert report.sessions >= 2 and report.login_attempts >= 1 and report.throttle_keys >= 1
    assert old_attempts == 0
    app.get("/api/v1/sessions/current", headers=live, status=200)


def test_cleanup_command_line(tmp_path, settings, capsys):
    ini = tmp_path / "ops.ini"
    ini.write_text(
        "[app:main]\nuse = egg:hcc-federation\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    )
    assert main([str(ini)]) == 0
    assert capsys.readouterr().out.startswith("hcc-cleanup: ")


def test_alembic_runs_from_production_ini_with_the_url_from_the_environment(tmp_path):
    env = {
        **os.environ,
        "HCC_DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite'}",
        "HCC_AUTH_SECRET": "x" * 40,
        "HCC_LDAP_BIND_PASSWORD": "unused",
    }
    alembic = Path(sys.executable).parent / "alembic"
    done = subprocess.run(
        [str(alembic), "-c", str(ROOT / "production.ini"), "current"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [str(alembic), "-c", str(ROOT / "production.ini"), "upgrade", "head"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    engine = create_engine(env["HCC_DATABASE_URL"])
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version"))
    engine.dispose()


def test_the_mod_wsgi_entry_loads_the_ini_named_by_hcc_ini():
    code = (
        "import hcc_federation.wsgi as w; from webtest import TestApp;"
        "print(TestApp(w.application).get('/api/v1/openapi.json').status_int)"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", code],
        env={**os.environ, "HCC_INI": str(ROOT / "development.ini")},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("200")


def _ini(tmp_path: Path, settings: dict) -> Path:
    ini = tmp_path / "service.ini"
    lines = ["[app:main]", "use = egg:hcc-federation", *(f"{k} = {v}" for k, v in settings.items())]
    lines += ["", "[alembic]", f"script_location = {ROOT / 'alembic'}"]
    ini.write_text("\n".join(lines) + "\n")
    # as an admin keeps it: start-up and hcc-check refuse an ini that other users can read
    ini.chmod(0o600)
    return ini


def _command(name: str, *args: str) -> subprocess.CompletedProcess:
    """An installed console script, run as an admin would run it."""
    return subprocess.run(
        [str(Path(sys.executable).parent / name), *args], capture_output=True, text=True, timeout=120
    )


def test_hcc_check_passes_a_working_configuration(tmp_path, settings):
    done = _command("hcc-check", str(_ini(tmp_path, settings)))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok   settings",
        "ok   ini file",
        "ok   auth secret",
        "ok   sqlite file",
        "ok   ca key file",
        "ok   database",
        "ok   ldap",
        "ok   ssh user CA",
        "ok   cluster alpha",
        "ok   cluster beta",
    ]


def test_hcc_check_names_each_failure(tmp_path, settings, endpoints):
    # beta's host keys under alpha's name; a database that was never migrated; no LDAP
    beta = endpoints["clusters"]["beta"]
    alpha_port = endpoints["clusters"]["alpha"]["ssh_port"]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(
        Path(beta["known_hosts"])
        .read_text()
        .replace(f":{beta['ssh_port']}]", f":{alpha_port}]")
        .replace(f"]:{beta['ssh_port']}", f"]:{alpha_port}")
    )
    broken = {
        **settings,
        "hcc.cluster.alpha.known_hosts": str(wrong),
        "hcc.database.url": f"sqlite:///{tmp_path / 'empty.sqlite'}",
        "hcc.ldap.uri": "ldap://127.0.0.1:1",
    }
    done = _command("hcc-check", str(_ini(tmp_path, broken)))
    assert done.returncode == 1
    out = done.stdout
    assert "FAIL database" in out and "FAIL ldap" in out and "FAIL cluster alpha" in out
    assert "hostkey_mismatch" in out and "ok   cluster beta" in out


def test_hcc_check_reports_what_start_up_refuses(tmp_path, settings, endpoints):
    ca_key = tmp_path / "user_ca"
    ca_key.write_bytes(Path(endpoints["ssh_user_ca"]["private_key"]).read_bytes())
    ca_key.chmod(0o644)
    sqlite = tmp_path / "open.sqlite"
    sqlite.touch()
    sqlite.chmod(0o644)
    unsafe = {
        **settings,
        "hcc.auth.secret": "development-only-secret-do-not-use-in-production",
        "hcc.ssh.ca_key": str(ca_key),
    }
    ini = _ini(tmp_path, unsafe)
    ini.chmod(0o644)
    done = _command("hcc-check", str(ini))
    assert done.returncode == 1
    out = done.stdout
    assert f"FAIL ini file: the ini file {ini} is open to other users (mode 0644)" in out
    assert "FAIL ca key file: the SSH user CA key" in out
    if settings["hcc.database.url"].startswith("mysql"):
        # production: the development secret is refused; SQLite (development) may keep it
        assert "FAIL auth secret: hcc.auth.secret is the development secret" in out
    done = _command("hcc-check", str(_ini(tmp_path, {**settings, "hcc.database.url": f"sqlite:///{sqlite}"})))
    assert f"FAIL sqlite file: the SQLite registry {sqlite} is open to other users" in done.stdout


def test_hcc_check_reports_a_bad_setting_by_its_key(tmp_path, settings):
    done = _command("hcc-check", str(_ini(tmp_path, {**settings, "hcc.cluster.alpha.port": "ssh"})))
    assert done.returncode == 1
    assert done.stdout.startswith("FAIL settings: setting hcc.cluster.alpha.port must be an integer")


def test_hcc_cleanup_runs_as_an_installed_command(tmp_path, settings):
    done = _command("hcc-cleanup", str(_ini(tmp_path, settings)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hcc-cleanup: ")


def test_upload_records_hcc_cleanup_cannot_act_on_are_dropped_after_the_bound(database_url):
    from hcc_federation.files.leftovers import LEFTOVER_BOUND
    from hcc_federation.models import UploadTemp
    from hcc_federation.scripts.cleanup import cleanup_upload_leftovers

    now = utcnow()
    ages = {
        "young": timedelta(hours=1),
        "stale": timedelta(days=2),
        "past": LEFTOVER_BOUND + timedelta(hours=1),
    }
    engine = create_engine(database_url)
    with Session(engine) as db, db.begin():
        rows = {
            name: UploadTemp(
                username="alice",
                cluster="alpha",
                path=f"/home/alice/.hcc-upload-{name}",
                started_at=now - age,
            )
            for name, age in ages.items()
        }
        db.add_all(rows.values())
        db.flush()
        ids = {name: row.id for name, row in rows.items()}
    asked = []

    def password_cluster(cluster, username):
        asked.append((cluster, username))
        return None  # hcc-cleanup holds no password: it cannot log in

    with Session(engine) as db, db.begin():
        report = cleanup_upload_leftovers(db, access=password_cluster, now=now)
    with Session(engine) as db:
        kept = set(db.scalars(select(UploadTemp.id).where(UploadTemp.id.in_(ids.values()))))
        db.execute(UploadTemp.__table__.delete().where(UploadTemp.id.in_(ids.values())))
        db.commit()
    engine.dispose()
    assert kept == {ids["young"], ids["stale"]}
    assert (report.unreachable, report.dropped, report.removed) == (1, 1, 0)
    # the young one was not even looked at: its upload may still be running
    assert asked == [("alpha", "alice")] * 2
