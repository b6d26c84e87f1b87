#!/bin/bash
# replicas.sh [up|down|status] - two replicas of the service (pserve, waitress) sharing one MariaDB
# database, behind HAProxy (round robin, health-checked on /api/v1/health), on the test bed (root).
#   up      start what is not running and wait until HAProxy serves (idempotent)
#   down    stop them (by their pid files; the bed's down.sh also stops them)
#   status  pid of each
# Each replica runs `pserve service.ini http_port=N` as the service's user, with the secrets in its
# environment: the same files as docs/deploy.md, section 9. Needs the bed up (scripts/testbed/up.sh).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/testbed/lib.sh"
[ "$(id -u)" = 0 ] || die "replicas.sh must run as root"
[ -f "$S/hcc/service.ini" ] || die "the hosted service is not set up: run scripts/testbed/up.sh"
TMPL="$HERE/templates"
T0=$SECONDS
# the replicas serve the code installed in the service's venv, never a checkout that a caller's
# PYTHONPATH names (a test run from a worktree would otherwise make them run its code on the
# bed's schema)
unset PYTHONPATH

replicas_up() {
  local port SERVER_LINES=""
  for port in $REPLICA_PORTS; do
    # a replica keeps the code and the ini it started with: restart it when install.sh installed
    # new code or up.sh rendered a new service.ini
    if is_running "replica-$port" && ! { cmp -s "$TESTBED_SERVICE_VENV/.hcc-code.sha" "$RUN/replica-$port.code.started" \
        && cmp -s "$S/hcc/service.ini" "$RUN/replica-$port.ini.started"; }; then
      stop_daemon "replica-$port"
    fi
    ( hosted_env "$REPLICAS_DB"
      start_daemon "replica-$port" "$SERVICE_USER" "$TESTBED_SERVICE_VENV/bin/python" \
        -m pyramid.scripts.pserve "$HCC_INI" "http_port=$port" )
    cp "$TESTBED_SERVICE_VENV/.hcc-code.sha" "$RUN/replica-$port.code.started"
    install -m 600 "$S/hcc/service.ini" "$RUN/replica-$port.ini.started"
    SERVER_LINES+="  server replica-$port 127.0.0.1:$port check"$'\n'
  done
  SERVER_LINES="${SERVER_LINES%$'\n'}"
  for port in $REPLICA_PORTS; do
    WAIT_DAEMON="replica-$port" wait_for "replica-$port" 60 \
      curl -sf -m 5 "http://127.0.0.1:$port/api/v1/health"
  done
  render "$TMPL/haproxy.cfg" "$ETC/haproxy.cfg" HAPROXY_PORT SERVER_LINES
  haproxy -c -q -f "$ETC/haproxy.cfg" || die "haproxy -c refused $ETC/haproxy.cfg"
  if is_running haproxy && ! cmp -s "$ETC/haproxy.cfg" "$RUN/haproxy.cfg.started"; then
    stop_daemon haproxy
  fi
  start_daemon haproxy - /usr/sbin/haproxy -db -f "$ETC/haproxy.cfg"
  cp "$ETC/haproxy.cfg" "$RUN/haproxy.cfg.started"
  WAIT_DAEMON=haproxy wait_for "haproxy (http://127.0.0.1:$HAPROXY_PORT)" 30 \
    curl -sf -m 5 "http://127.0.0.1:$HAPROXY_PORT/api/v1/health"
  log "replicas up in $((SECONDS - T0)) s: http://127.0.0.1:$HAPROXY_PORT"
}

replicas_down() {
  local port
  stop_daemon haproxy
  for port in $REPLICA_PORTS; do stop_daemon "replica-$port"; done
}

case "${1:-up}" in
  up) replicas_up ;;
  down) replicas_down ;;
  status)
    for name in haproxy $(printf 'replica-%s ' $REPLICA_PORTS); do
      if is_running "$name"; then echo "$name running (pid $(cat "$RUN/$name.pid"))"; else echo "$name stopped"; fi
    done ;;
  *) die "usage: replicas.sh [up|down|status]" ;;
esac
