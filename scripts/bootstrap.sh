#!/bin/bash
# bootstrap.sh - install the service's build dependencies (Debian 12, root) and its venv in .venv.
# Idempotent: a second run only checks. HCC_VENV=dir puts the venv elsewhere.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HCC_VENV:-$ROOT/.venv}"
T0=$SECONDS
# mysqlclient ships no Linux wheel: it compiles against libmariadb-dev, found through pkg-config
PKGS=(libmariadb-dev pkg-config gcc python3-dev python3-venv openssh-client ldap-utils)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "bootstrap: run as root to install ${missing[*]}" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# reinstall only when setup.py or pyproject.toml changed since the last successful install
stamp="$VENV/.hcc-setup.sha"
want="$(cat "$ROOT/setup.py" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check "setuptools<82" wheel
  "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test]"
  echo "$want" > "$stamp"
fi
echo "bootstrap: venv $VENV ready in $((SECONDS - T0)) s"
