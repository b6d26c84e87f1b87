#!/bin/bash
# up.sh - bring the test bed up on 127.0.0.1 and wait until every server answers (idempotent, root).
#   MariaDB, OpenLDAP slapd (ppolicy), munge, one slurmdbd, one slurmctld + slurmd per cluster and
#   one sshd per cluster (its login node). Writes $TESTBED_STATE/endpoints.json for the tests and
#   the development configuration. A second run starts only what is not running.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
[ "$(id -u)" = 0 ] || die "up.sh must run as root"
command -v slurmctld >/dev/null || die "test bed packages missing: run scripts/testbed/install.sh first"
T0=$SECONDS
TMPL="$HERE/templates"
umask 022
install -d -m 755 "$S" "$RUN" "$LOG" "$ETC"
install -d -m 700 "$S/keys" "$S/ca"
CPUS="$(nproc)"

# NoInAddrAny makes slurmd, srun and slurmdbd bind the address the host name resolves to; only
# safe when that is loopback (else srun would listen where slurmd does not reach it).
if getent ahostsv4 "$HOST_SHORT" | awk '{print $1; exit}' | grep -q '^127\.'; then
  COMM_LINE="CommunicationParameters=NoInAddrAny"
else
  COMM_LINE="# NoInAddrAny left out: $HOST_SHORT does not resolve to 127.x"
fi

setup_keys() {
  [ -f "$S/ca/user_ca" ] || ssh-keygen -q -t ed25519 -N '' -C "hcc test bed user CA" -f "$S/ca/user_ca"
  local c
  for c in $CLUSTERS; do
    install -d -m 700 "$S/ssh/$c"
    [ -f "$S/ssh/$c/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$S/ssh/$c/ssh_host_ed25519_key"
    [ -f "$S/ssh/$c/ssh_host_rsa_key" ] || ssh-keygen -q -t rsa -b 3072 -N '' -f "$S/ssh/$c/ssh_host_rsa_key"
    # what a client must trust: the host keys under "[host]:port", as OpenSSH writes them
    local port; port="$(cluster_var "$c" SSH_PORT)"
    awk -v h="[127.0.0.1]:$port" '{print h, $1, $2}' \
      "$S/ssh/$c/ssh_host_ed25519_key.pub" "$S/ssh/$c/ssh_host_rsa_key.pub" > "$S/ssh/$c/known_hosts"
    chmod 644 "$S/ssh/$c/known_hosts"
  done
}

setup_users() {
  getent group hpcusers >/dev/null || groupadd -g "$USERS_GID" hpcusers
  local name uid pw full locked
  while IFS=: read -r name uid pw full locked; do
    setup_unix_user "$name" "$uid" "$pw" "$full"
  done < <(user_lines)
}

setup_munge() {
  install -d -o munge -g munge -m 755 /run/munge
  # a munged that another setup started already answers on the standard socket: share it
  if ! is_running munged && [ -S /run/munge/munge.socket.2 ] && munge -n </dev/null | unmunge >/dev/null 2>&1; then
    log "munged: using the one already running"; return 0
  fi
  start_daemon munged munge /usr/sbin/munged -F
  WAIT_DAEMON=munged wait_for munged 20 bash -c 'munge -n </dev/null | unmunge'
}

setup_mariadb() {
  install -d -o mysql -g mysql -m 750 "$S/mysql" "$S/mysql/data"
  render "$TMPL/my.cnf" "$ETC/my.cnf" S MYSQL_PORT
  touch "$LOG/mariadb.err"; chown mysql:mysql "$LOG/mariadb.err"
  if [ ! -d "$S/mysql/data/mysql" ]; then
    log "mariadb: initialising the data directory"
    mariadb-install-db --defaults-file="$ETC/my.cnf" --user=mysql --skip-test-db \
      --auth-root-authentication-method=socket >> "$LOG/mariadb-install.log" 2>&1
  fi
  start_daemon mariadb - /usr/sbin/mariadbd --defaults-file="$ETC/my.cnf"
  WAIT_DAEMON=mariadb wait_for mariadb 60 mariadb-admin --defaults-file="$ETC/my.cnf" ping
  # the service's user may also create hccfed_* databases: the tests make one per run
  mariadb --defaults-file="$ETC/my.cnf" <<SQL
CREATE DATABASE IF NOT EXISTS \`$SVC_DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS \`$SLURM_DB\`;
CREATE USER IF NOT EXISTS '$SVC_DB_USER'@'127.0.0.1' IDENTIFIED BY '$SVC_DB_PASS';
CREATE USER IF NOT EXISTS '$SVC_DB_USER'@'localhost' IDENTIFIED BY '$SVC_DB_PASS';
GRANT ALL PRIVILEGES ON \`$SVC_DB\`.* TO '$SVC_DB_USER'@'127.0.0.1', '$SVC_DB_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`${SVC_DB}\\_%\`.* TO '$SVC_DB_USER'@'127.0.0.1', '$SVC_DB_USER'@'localhost';
CREATE USER IF NOT EXISTS '$SLURM_DB_USER'@'127.0.0.1' IDENTIFIED BY '$SLURM_DB_PASS';
CREATE USER IF NOT EXISTS '$SLURM_DB_USER'@'localhost' IDENTIFIED BY '$SLURM_DB_PASS';
GRANT ALL PRIVILEGES ON \`$SLURM_DB\`.* TO '$SLURM_DB_USER'@'127.0.0.1', '$SLURM_DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
}

setup_slapd() {
  install -d -o openldap -g openldap -m 750 "$S/ldap" "$S/ldap/db"
  local LDAP_ADMIN_HASH LDAP_READONLY_HASH HPCUSERS_MEMBERS="" name uid pw full locked
  LDAP_ADMIN_HASH="$(slappasswd -h '{SSHA}' -s "$LDAP_ADMIN_PASS")"
  LDAP_READONLY_HASH="$(slappasswd -h '{SSHA}' -s "$LDAP_READONLY_PASS")"
  while IFS=: read -r name uid pw full locked; do
    HPCUSERS_MEMBERS+="memberUid: $name"$'\n'
  done < <(user_lines)
  HPCUSERS_MEMBERS="${HPCUSERS_MEMBERS%$'\n'}"
  # a running slapd keeps the config it read at start; rendering again only matters for a new one
  render "$TMPL/slapd.conf" "$ETC/slapd.conf" S LDAP_BASE LDAP_ADMIN_HASH
  chown root:openldap "$ETC/slapd.conf"; chmod 640 "$ETC/slapd.conf"
  if [ ! -f "$S/ldap/db/data.mdb" ]; then
    log "slapd: loading the initial directory"
    render "$TMPL/base.ldif" "$ETC/base.ldif" LDAP_BASE LDAP_READONLY_HASH USERS_GID HPCUSERS_MEMBERS
    echo >> "$ETC/base.ldif"
    while IFS=: read -r name uid pw full locked; do
      user_ldif "$name" "$uid" "$pw" "$full" "$locked" >> "$ETC/base.ldif"
    done < <(user_lines)
    chmod 600 "$ETC/base.ldif"
    slapadd -q -f "$ETC/slapd.conf" -l "$ETC/base.ldif" >> "$LOG/slapadd.log" 2>&1
    chown -R openldap:openldap "$S/ldap"
  fi
  # no syslog here: -d 256 sends the stats log to stderr, which start_daemon captures
  start_daemon slapd - /usr/sbin/slapd -d 256 -u openldap -g openldap -f "$ETC/slapd.conf" \
    -h "ldap://127.0.0.1:$LDAP_PORT/"
  WAIT_DAEMON=slapd wait_for slapd 30 ldapwhoami -x -H "ldap://127.0.0.1:$LDAP_PORT" \
    -D "cn=readonly,$LDAP_BASE" -w "$LDAP_READONLY_PASS"
}

setup_slurmdbd() {
  install -d -o slurm -g slurm -m 755 "$S/slurm"
  install -d -m 755 "$ETC/slurmdbd"
  render "$TMPL/slurmdbd.conf" "$ETC/slurmdbd/slurmdbd.conf" S HOST_SHORT SLURMDBD_PORT MYSQL_PORT \
    SLURM_DB_USER SLURM_DB_PASS SLURM_DB COMM_LINE
  chown slurm:slurm "$ETC/slurmdbd/slurmdbd.conf"; chmod 600 "$ETC/slurmdbd/slurmdbd.conf"
  touch "$LOG/slurmdbd.file.log"; chown slurm:slurm "$LOG/slurmdbd.file.log"
  # slurmdbd has no -f: it reads slurmdbd.conf beside $SLURM_CONF
  SLURM_CONF="$ETC/slurmdbd/slurm.conf" start_daemon slurmdbd - /usr/sbin/slurmdbd -D
}

render_slurm_conf() {
  local c="$1" CLUSTER="$1" CTLD_PORT SLURMD_PORT
  CTLD_PORT="$(cluster_var "$c" CTLD_PORT)"; SLURMD_PORT="$(cluster_var "$c" SLURMD_PORT)"
  install -d -m 755 "$ETC/slurm-$c"
  render "$TMPL/slurm.conf" "$ETC/slurm-$c/slurm.conf" S CLUSTER HOST_SHORT CTLD_PORT SLURMD_PORT \
    SLURMDBD_PORT CPUS COMM_LINE
}

setup_accounting() {
  local first users clist c missing=""
  first="${CLUSTERS%% *}"
  export SLURM_CONF="$ETC/slurm-$first/slurm.conf"
  WAIT_DAEMON=slurmdbd wait_for slurmdbd 60 sacctmgr -n -P show cluster
  users="$(user_lines | cut -d: -f1 | paste -sd,)"
  clist="$(tr ' ' , <<< "$CLUSTERS")"
  for c in $CLUSTERS; do
    sacctmgr -n -P show cluster format=cluster | grep -qx "$c" || missing+="${missing:+,}$c"
  done
  # each sacctmgr change costs about 1 s: one call per kind of change
  [ -z "$missing" ] || sacctmgr -i add cluster "$missing" >/dev/null
  sacctmgr -n -P show account format=account | grep -qx research || \
    sacctmgr -i add account research Description=testbed Organization=example Cluster="$clist" >/dev/null
  # adds only the missing associations; "Nothing new added" exits 1
  sacctmgr -i add user "$users" Account=research Cluster="$clist" >/dev/null || true
  unset SLURM_CONF
}

setup_cluster() {
  local c="$1" conf="$ETC/slurm-$1/slurm.conf"
  install -d -o slurm -g slurm -m 755 "$S/slurm/$c" "$S/slurm/$c/ctld"
  install -d -o root -g root -m 755 "$S/slurm/$c/spool"
  touch "$LOG/slurmctld-$c.file.log"; chown slurm:slurm "$LOG/slurmctld-$c.file.log"
  SLURM_CONF="$conf" start_daemon "slurmctld-$c" - /usr/sbin/slurmctld -D -f "$conf"
  SLURM_CONF="$conf" WAIT_DAEMON="slurmctld-$c" wait_for "slurmctld-$c" 60 bash -c 'scontrol ping | grep -q "is UP"'
  # -N: both clusters' slurmds run on this one host, each as its own node name
  SLURM_CONF="$conf" start_daemon "slurmd-$c" - /usr/sbin/slurmd -D -f "$conf" -N "$c-n1"
  SLURM_CONF="$conf" WAIT_DAEMON="slurmd-$c" wait_for "slurmd-$c ($c-n1 idle)" 90 \
    bash -c "sinfo -h -n $c-n1 -o %T | grep -Eq '^(idle|mixed|allocated)'"
}

setup_sshd() {
  local c="$1" CLUSTER="$1" SSH_PORT
  SSH_PORT="$(cluster_var "$c" SSH_PORT)"
  install -d -m 755 /run/sshd
  render "$TMPL/sshd_config" "$ETC/sshd-$c.conf" S CLUSTER SSH_PORT
  /usr/sbin/sshd -t -f "$ETC/sshd-$c.conf"
  # a running `sshd -D` re-execs itself with the same pid on SIGHUP and reads a changed config
  if is_running "sshd-$c" && ! cmp -s "$ETC/sshd-$c.conf" "$RUN/sshd-$c.conf.started"; then
    start-stop-daemon --stop --signal HUP --pidfile "$RUN/sshd-$c.pid" --exec /usr/sbin/sshd
    log "sshd-$c: config changed, reloaded"
    sleep 0.5
  fi
  start_daemon "sshd-$c" - /usr/sbin/sshd -D -e -f "$ETC/sshd-$c.conf"
  cp "$ETC/sshd-$c.conf" "$RUN/sshd-$c.conf.started"
  WAIT_DAEMON="sshd-$c" wait_for "sshd-$c (port $SSH_PORT)" 20 tcp_open "$SSH_PORT"
}

# --- the hosted service: what an admin runs, on the bed's LDAP, clusters and MariaDB ---
ROOT="$(cd "$HERE/../.." && pwd)"
HCC="$S/hcc"

setup_service() {
  id "$SERVICE_USER" >/dev/null 2>&1 || useradd --system --user-group --no-create-home \
    --home-dir /nonexistent --shell /usr/sbin/nologin "$SERVICE_USER"
  install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 700 "$HCC" "$HCC/known_hosts"
  # the service's own copies, readable by its user only (start-up refuses a CA key others can read)
  install -o "$SERVICE_USER" -g "$SERVICE_USER" -m 600 "$S/ca/user_ca" "$HCC/user_ca"
  local c
  for c in $CLUSTERS; do
    install -o "$SERVICE_USER" -g "$SERVICE_USER" -m 644 "$S/ssh/$c/known_hosts" "$HCC/known_hosts/$c"
  done
  render "$TMPL/hcc-service.ini" "$HCC/service.ini" S ROOT LDAP_PORT LDAP_BASE ALPHA_SSH_PORT BETA_SSH_PORT \
    TESTBED_JUPYTER_VENV JUPYTER_PORT_LO JUPYTER_PORT_HI
  chown "$SERVICE_USER:$SERVICE_USER" "$HCC/service.ini"; chmod 600 "$HCC/service.ini"
  # a certificate for 127.0.0.1, which the tests trust (tls/server.crt) as a portal would its CA's
  install -d -m 755 "$S/tls"
  if [ ! -f "$S/tls/server.crt" ]; then
    ( umask 077; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$S/tls/server.key" -out "$S/tls/server.crt.tmp" 2>> "$LOG/openssl.log" )
    chmod 644 "$S/tls/server.crt.tmp"; mv "$S/tls/server.crt.tmp" "$S/tls/server.crt"
  fi
  local db
  for db in "$APACHE_DB" "$REPLICAS_DB"; do
    mariadb --defaults-file="$ETC/my.cnf" -e \
      "CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    # the schema only ever comes from the migrations, as in production
    ( hosted_env "$db"; "$TESTBED_SERVICE_VENV/bin/alembic" -c "$HCC_INI" upgrade head >> "$LOG/alembic.log" 2>&1 ) \
      || die "alembic upgrade of $db failed (log: $LOG/alembic.log)"
  done
}

setup_apache() {
  local SERVICE_VENV="$TESTBED_SERVICE_VENV" WSGI_SCRIPT
  # the installed package's wsgi.py (from /, so that no checkout in the working directory is imported)
  WSGI_SCRIPT="$(cd / && "$SERVICE_VENV/bin/python" -c \
    'import hcc_federation, os; print(os.path.join(os.path.dirname(hcc_federation.__file__), "wsgi.py"))')"
  install -d -m 755 "$RUN/apache2"
  render "$TMPL/apache2.conf" "$ETC/apache2.conf" S RUN LOG APACHE_PORT SERVICE_USER SERVICE_VENV WSGI_SCRIPT
  /usr/sbin/apache2 -t -f "$ETC/apache2.conf" >> "$LOG/apache2.log" 2>&1 \
    || die "apache2 -t refused $ETC/apache2.conf (log: $LOG/apache2.log)"
  # a running Apache keeps the config and the code it started with: restart it when either changed
  if is_running apache2 && ! { cmp -s "$ETC/apache2.conf" "$RUN/apache2.conf.started" \
      && cmp -s "$SERVICE_VENV/.hcc-code.sha" "$RUN/apache2.code.started"; }; then
    stop_daemon apache2
  fi
  ( hosted_env "$APACHE_DB"
    start_daemon apache2 - /usr/sbin/apache2 -f "$ETC/apache2.conf" -DFOREGROUND )
  cp "$ETC/apache2.conf" "$RUN/apache2.conf.started"
  cp "$SERVICE_VENV/.hcc-code.sha" "$RUN/apache2.code.started"
  WAIT_DAEMON=apache2 wait_for "apache2 mod_wsgi (https://127.0.0.1:$APACHE_PORT)" 60 \
    curl -sf -m 5 --cacert "$S/tls/server.crt" "https://127.0.0.1:$APACHE_PORT/api/v1/health"
}

log "state dir: $S"
setup_keys
setup_users
setup_munge
setup_mariadb
setup_slapd
for c in $CLUSTERS; do render_slurm_conf "$c"; done
setup_slurmdbd
setup_accounting
for c in $CLUSTERS; do setup_cluster "$c"; done
for c in $CLUSTERS; do setup_sshd "$c"; done
if [ -x "$TESTBED_SERVICE_VENV/bin/alembic" ]; then
  setup_service
  setup_apache
else
  log "hosted service skipped: $TESTBED_SERVICE_VENV is missing (run scripts/testbed/install.sh)"
fi
# endpoints.json holds test credentials: readable by root only
export S CLUSTERS TESTBED_USERS LDAP_BASE LDAP_PORT LDAP_ADMIN_PASS LDAP_READONLY_PASS MYSQL_PORT \
  SVC_DB SVC_DB_USER SVC_DB_PASS SLURMDBD_PORT TESTBED_JUPYTER_VENV JUPYTER_PORT_LO JUPYTER_PORT_HI \
  ALPHA_SSH_PORT BETA_SSH_PORT APACHE_PORT HAPROXY_PORT REPLICA_PORTS APACHE_DB REPLICAS_DB \
  HOSTED_AUTH_SECRET TESTBED_SERVICE_VENV SERVICE_USER
( umask 077; /usr/bin/python3 "$HERE/endpoints.py" > "$S/endpoints.json.tmp" )
mv "$S/endpoints.json.tmp" "$S/endpoints.json"
if [ -f "$S/hcc/service.ini" ]; then
  ( umask 077; /usr/bin/python3 "$HERE/endpoints.py" hosting > "$S/hosting.json.tmp" )
  mv "$S/hosting.json.tmp" "$S/hosting.json"
fi
log "test bed up in $((SECONDS - T0)) s; endpoints: $S/endpoints.json"
