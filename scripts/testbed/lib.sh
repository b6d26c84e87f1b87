# lib.sh - helpers shared by the test bed scripts (sourced, not executed).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/testbed.env"
S="$TESTBED_STATE"
RUN="$S/run"; LOG="$S/log"; ETC="$S/etc"
HOST_SHORT="$(hostname -s)"

log() { printf '[testbed %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

# render TEMPLATE OUT VAR... : write TEMPLATE with every @VAR@ replaced by $VAR (atomically)
render() {
  local tmpl="$1" out="$2"; shift 2
  local content v; content="$(cat "$tmpl")"
  for v in "$@"; do content="${content//@$v@/${!v}}"; done
  printf '%s\n' "$content" > "$out.tmp" && mv "$out.tmp" "$out"
}

# is_running NAME : our pid file points at a live process of the binary we recorded.
# (start-stop-daemon --exec checks the binary, so a recycled pid is never taken for ours)
is_running() {
  [ -f "$RUN/$1.pid" ] && [ -f "$RUN/$1.exe" ] || return 1
  start-stop-daemon --status --pidfile "$RUN/$1.pid" --exec "$(cat "$RUN/$1.exe")"
}

# start_daemon NAME USER EXE ARGS... : run EXE (in its foreground mode) in the background with
# its pid in $RUN/NAME.pid and its output in $LOG/NAME.log. USER '-' stays root (the daemon
# drops privileges itself). A daemon that already runs is left alone.
start_daemon() {
  local name="$1" user="$2" exe="$3"; shift 3
  if is_running "$name"; then log "$name already running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
  touch "$LOG/$name.log"
  [ "$user" != - ] && chown "$user" "$LOG/$name.log"
  echo "$exe" > "$RUN/$name.exe"
  grep -qx "$name" "$RUN/started" 2>/dev/null || echo "$name" >> "$RUN/started"
  local chuid=(); [ "$user" != - ] && chuid=(--chuid "$user")
  start-stop-daemon --start --background --make-pidfile --pidfile "$RUN/$name.pid" \
    --output "$LOG/$name.log" "${chuid[@]}" --exec "$exe" -- "$@"
  log "$name started (pid $(cat "$RUN/$name.pid"))"
}

# stop_daemon NAME : stop by our pid file only, never by process name
stop_daemon() {
  local name="$1"
  if is_running "$name"; then
    start-stop-daemon --stop --quiet --pidfile "$RUN/$name.pid" --exec "$(cat "$RUN/$name.exe")" \
      --retry TERM/30/KILL/5 && log "$name stopped" || log "$name: stop failed"
  fi
  rm -f "$RUN/$name.pid" "$RUN/$name.exe"
}

# wait_for WHAT SECONDS CMD... : poll CMD until it succeeds; with WAIT_DAEMON=NAME give up at
# once (showing its log) when that daemon has died.
wait_for() {
  local what="$1" t="$2"; shift 2
  local end=$((SECONDS + t)) t0=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if [ -n "${WAIT_DAEMON:-}" ] && ! is_running "$WAIT_DAEMON"; then
      tail -n 25 "$LOG/$WAIT_DAEMON.log" >&2 || true
      die "$WAIT_DAEMON exited while waiting for $what (log: $LOG/$WAIT_DAEMON.log)"
    fi
    if [ $SECONDS -ge $end ]; then
      [ -n "${WAIT_DAEMON:-}" ] && tail -n 25 "$LOG/$WAIT_DAEMON.log" >&2
      die "timeout ($t s) waiting for $what"
    fi
    sleep 0.2
  done
  log "$what: ready after $((SECONDS - t0)) s"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# user_lines : one "name:uid:password:full name:locked" line per test user
user_lines() { tr ';' '\n' <<< "$TESTBED_USERS" | sed '/^$/d'; }

# setup_unix_user NAME UID PASSWORD FULLNAME : the Unix account, its password (sshd's password
# login) and its key in $S/keys, authorized for the clusters' sshd (idempotent)
setup_unix_user() {
  local name="$1" uid="$2" pw="$3" full="$4" pub
  id "$name" >/dev/null 2>&1 || useradd -m -u "$uid" -g hpcusers -s /bin/bash -c "$full" "$name"
  echo "$name:$pw" | chpasswd
  install -d -o "$name" -g hpcusers -m 700 "/home/$name/.ssh"
  [ -f "$S/keys/${name}_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "$name@testbed" -f "$S/keys/${name}_ed25519"
  pub="$(cat "$S/keys/${name}_ed25519.pub")"
  touch "/home/$name/.ssh/authorized_keys"
  grep -qxF "$pub" "/home/$name/.ssh/authorized_keys" || echo "$pub" >> "/home/$name/.ssh/authorized_keys"
  chown "$name:hpcusers" "/home/$name/.ssh/authorized_keys"
  chmod 600 "/home/$name/.ssh/authorized_keys"
}

# user_ldif NAME UID PASSWORD FULLNAME LOCKED : one inetOrgPerson + posixAccount entry
user_ldif() {
  local name="$1" uid="$2" pw="$3" full="$4" locked="$5"
  printf 'dn: uid=%s,ou=People,%s\n' "$name" "$LDAP_BASE"
  printf 'objectClass: %s\n' top inetOrgPerson posixAccount shadowAccount
  printf 'uid: %s\ncn: %s\nsn: %s\ngivenName: %s\nmail: %s@example.org\n' \
    "$name" "$full" "${full##* }" "${full%% *}" "$name"
  printf 'description: test user %s\n' "$name"
  printf 'uidNumber: %s\ngidNumber: %s\nhomeDirectory: /home/%s\nloginShell: /bin/bash\n' "$uid" "$USERS_GID" "$name"
  printf 'userPassword: %s\n' "$(slappasswd -h '{SSHA}' -s "$pw")"
  # 000001010000Z: locked until an administrator removes the attribute (ppolicy, OpenLDAP 2.5)
  [ "$locked" = 1 ] && printf 'pwdAccountLockedTime: 000001010000Z\n'
  echo
}

# cluster_var CLUSTER KEY : the value of ${CLUSTER^^}_KEY, e.g. cluster_var alpha SSH_PORT
cluster_var() { local v="${1^^}_$2"; echo "${!v}"; }

# hosted_env DB : the environment the hosted service reads its ini and secrets from (docs/deploy.md, 6)
hosted_env() {
  export HCC_INI="$S/hcc/service.ini"
  export HCC_DATABASE_URL="mysql+mysqldb://$SVC_DB_USER:$SVC_DB_PASS@127.0.0.1:$MYSQL_PORT/$1?charset=utf8mb4"
  export HCC_AUTH_SECRET="$HOSTED_AUTH_SECRET"
  export HCC_LDAP_BIND_PASSWORD="$LDAP_READONLY_PASS"
}
