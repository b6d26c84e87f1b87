#!/bin/bash
# install.sh - install what the test bed runs, from Debian 12 packages (idempotent, root).
# Starts no daemon: up.sh starts each one by hand, on its own ports. (systemd: only for
# `systemd-analyze verify` of the units in deploy/.)
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
[ "$(id -u)" = 0 ] || die "install.sh must run as root"
export DEBIAN_FRONTEND=noninteractive
T0=$SECONDS

PKGS=(mariadb-server mariadb-client
      slapd ldap-utils
      openssh-server openssh-client
      munge
      slurmctld slurmd slurmdbd slurm-client
      iproute2 procps python3-venv
      apache2 libapache2-mod-wsgi-py3 haproxy openssl curl systemd
      libmariadb-dev pkg-config gcc python3-dev)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  # slapd: no default dc=nodomain database; up.sh runs its own slapd from its own slapd.conf.
  debconf-set-selections <<'DEB'
slapd slapd/no_configuration boolean true
slapd shared/organization string example.org
slapd slapd/domain string example.org
DEB
  # Package scripts must not start daemons (there is no systemd here, and ours use other ports).
  # Many images already carry a policy-rc.d that says no; remove only the one we create.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  # a fresh machine's package lists may be stale or empty
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  log "installed: ${missing[*]}"
else
  log "all test bed packages already installed"
fi

# Jupyter for the cluster users: a venv from the system python, readable by all (umask 022 even
# under a stricter root umask), so that any user on a login or compute node can run it.
jupyter_ok() { "$@" "$TESTBED_JUPYTER_VENV/bin/python" -c 'import jupyter_server' 2>/dev/null; }
if ! { [ -x "$TESTBED_JUPYTER_VENV/bin/jupyter-server" ] && jupyter_ok; }; then
  ( umask 022
    [ -x "$TESTBED_JUPYTER_VENV/bin/python" ] || /usr/bin/python3 -m venv "$TESTBED_JUPYTER_VENV"
    read -ra jpkgs <<< "$TESTBED_JUPYTER_PKGS"
    "$TESTBED_JUPYTER_VENV/bin/pip" install -q --disable-pip-version-check "${jpkgs[@]}" )
  log "jupyter-server installed in $TESTBED_JUPYTER_VENV"
fi
# catches a venv made under umask 077: an unprivileged user must be able to import it
jupyter_ok runuser -u nobody -- || die "$TESTBED_JUPYTER_VENV cannot be used by an unprivileged user"
# The hosted service (Apache mod_wsgi, the replicas): a venv of Debian's python3, the one Debian's
# mod_wsgi embeds, with this checkout installed as an admin installs it (not editable: the service's
# user must read the code, and a checkout may sit where it cannot, e.g. under /root). Reinstalled
# when the checkout's code or setup.py changed; up.sh and replicas.sh then restart what serves it.
ROOT="$(cd "$HERE/../.." && pwd)"
svc_stamp="$TESTBED_SERVICE_VENV/.hcc-code.sha"
svc_want="$(cd "$ROOT" && find setup.py pyproject.toml hcc_federation -type f -name '*.py' -o -name '*.toml' \
  | sort | xargs cat | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$svc_stamp" 2>/dev/null)" != "$svc_want" ]; then
  ( umask 022
    [ -x "$TESTBED_SERVICE_VENV/bin/python" ] || /usr/bin/python3 -m venv "$TESTBED_SERVICE_VENV"
    "$TESTBED_SERVICE_VENV/bin/pip" install -q --disable-pip-version-check "setuptools<82" wheel
    # a copy of the checkout: pip builds in a temporary directory, not in the checkout
    "$TESTBED_SERVICE_VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$ROOT"
    "$TESTBED_SERVICE_VENV/bin/pip" install -q --disable-pip-version-check "$ROOT"
    echo "$svc_want" > "$svc_stamp" )
  log "hcc-federation installed in $TESTBED_SERVICE_VENV (from $ROOT)"
fi
log "install done in $((SECONDS - T0)) s"
