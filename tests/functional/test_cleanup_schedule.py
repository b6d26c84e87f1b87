"""The daily clean-up as admins schedule it: the systemd service and timer and the cron line in
deploy/, run as the service's user; --dry-run; runs on several hosts at once."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from hcc_federation.models import LoginAttempt
from hcc_federation.models.meta import utcnow
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"


def test_the_systemd_service_and_timer_verify(hosting):
    units = [str(DEPLOY / "hcc-cleanup.service"), str(DEPLOY / "hcc-cleanup.timer")]
    # the units name /opt/hcc-federation: the test bed installs the service exactly there
    assert Path(hosting["venv"]) == Path("/opt/hcc-federation")
    done = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr


def test_systemd_analyze_verify_does_refuse_a_broken_timer(tmp_path):
    """The check above can fail: a timer without a valid schedule is refused."""
    for name in ("hcc-cleanup.service", "hcc-cleanup.timer"):
        shutil.copy(DEPLOY / name, tmp_path / name)
    timer = tmp_path / "hcc-cleanup.timer"
    timer.write_text(re.sub(r"OnCalendar=.*", "OnCalendar=every day at three", timer.read_text()))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "hcc-cleanup.service"), str(timer)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0


@pytest.fixture
def registry(hosting, base_settings):
    """An /etc/hcc-federation of a test's own (ini and secrets.env, the service user's only), on the
    replicas' MariaDB database: {"etc", "url"}. (pytest's tmp_path is root's only.)"""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="hcc-cleanup-") as tmp:
        yield _etc(Path(tmp), hosting, base_settings)


def _etc(tmp_path: Path, hosting: dict, base_settings: dict) -> dict:
    etc = tmp_path / "etc"
    etc.mkdir()
    url = hosting["replicas"]["database_url"]
    settings = {k: v for k, v in base_settings.items() if k != "hcc.auth.secret"}
    # the service's own copies of the user CA and host keys, as its ini names them: the bed's are
    # root's, and a run as the service's user that logs in as owners reads them
    own = Path(hosting["ini"]).parent
    settings["hcc.ssh.ca_key"] = str(own / "user_ca")
    for key in [k for k in settings if k.startswith("hcc.cluster.") and k.endswith(".known_hosts")]:
        settings[key] = str(own / "known_hosts" / key.split(".")[2])
    (etc / "production.ini").write_text(
        "[app:main]\nuse = egg:hcc-federation\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    )
    (etc / "secrets.env").write_text(
        f"HCC_DATABASE_URL={url}\nHCC_AUTH_SECRET={'s' * 40}\nHCC_LDAP_BIND_PASSWORD=unused\n"
    )
    for path in (tmp_path, etc, etc / "production.ini", etc / "secrets.env"):
        shutil.chown(path, hosting["user"], hosting["user"])
        path.chmod(0o700 if path.is_dir() else 0o600)
    return {"etc": etc, "url": url}


def _stale_attempts(url: str, add: int = 0) -> int:
    """How many login attempts are old enough for the clean-up (after adding ``add`` of them)."""
    engine = create_engine(url)
    try:
        with Session(engine) as db:
            old = utcnow() - timedelta(days=3)
            for _ in range(add):
                db.add(
                    LoginAttempt(
                        username="cleanup-test", client_addr="192.0.2.1", attempted_at=old, success=False
                    )
                )
            db.commit()
            where = (
                LoginAttempt.username == "cleanup-test",
                LoginAttempt.attempted_at < utcnow() - timedelta(days=2),
            )
            return db.scalar(select(func.count()).select_from(LoginAttempt).where(*where))
    finally:
        engine.dispose()


# As cron runs it: the installed command and its own code, not a checkout that a PYTHONPATH names
# (a test run from a worktree ran that worktree's code on the bed's database, whose schema is the
# installed code's)
CRON_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _cron_command(etc: Path) -> tuple[str, str, str]:
    """(schedule, user, command) of deploy/hcc-cleanup.cron's job line, its paths moved to ``etc``."""
    lines = [
        line for line in (DEPLOY / "hcc-cleanup.cron").read_text().splitlines() if re.match(r"^[0-9*]", line)
    ]
    assert len(lines) == 1, lines
    fields = lines[0].split(None, 6)
    command = fields[6].replace("/etc/hcc-federation/", f"{etc}/")
    return " ".join(fields[:5]), fields[5], command


def test_the_cron_line_cleans_as_the_service_user(registry, hosting):
    schedule, user, command = _cron_command(registry["etc"])
    assert re.fullmatch(r"\d{1,2} \d{1,2} \* \* \*", schedule)  # once a day
    assert user == hosting["user"]
    assert _stale_attempts(registry["url"], add=3) >= 3
    done = subprocess.run(
        ["runuser", "-u", user, "--", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
        env=CRON_ENV,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hcc-cleanup: ") and "deleted" in done.stdout
    assert _stale_attempts(registry["url"]) == 0


def _cleanup(etc: Path, *args: str) -> subprocess.CompletedProcess:
    _, user, command = _cron_command(etc)
    return subprocess.run(
        ["runuser", "-u", user, "--", "sh", "-c", command + "".join(f" {a}" for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
        # as cron runs it: not from a checkout the service's user may not enter
        cwd="/",
        env=CRON_ENV,
    )


def test_a_dry_run_counts_and_deletes_nothing(registry):
    stale = _stale_attempts(registry["url"], add=2)
    done = _cleanup(registry["etc"], "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "would be deleted (dry run)" in done.stdout
    counted = int(re.search(r"(\d+) login attempts", done.stdout).group(1))
    assert counted >= stale >= 2
    assert _stale_attempts(registry["url"]) == stale


def test_a_run_while_another_holds_the_lock_does_nothing(registry):
    _stale_attempts(registry["url"], add=2)
    engine = create_engine(registry["url"])
    try:
        with engine.connect() as other_host:
            assert other_host.execute(text("SELECT GET_LOCK('hcc-cleanup', 0)")).scalar() == 1
            done = _cleanup(registry["etc"])
            assert done.returncode == 0, done.stderr
            assert "another run holds the lock; nothing done" in done.stdout
            assert _stale_attempts(registry["url"]) >= 2
            other_host.execute(text("SELECT RELEASE_LOCK('hcc-cleanup')"))
    finally:
        engine.dispose()
    assert _cleanup(registry["etc"]).returncode == 0
    assert _stale_attempts(registry["url"]) == 0


def test_runs_started_together_on_several_hosts_all_succeed(registry):
    _stale_attempts(registry["url"], add=50)
    results: list[subprocess.CompletedProcess] = []
    runs = [threading.Thread(target=lambda: results.append(_cleanup(registry["etc"]))) for _ in range(4)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    assert _stale_attempts(registry["url"]) == 0
