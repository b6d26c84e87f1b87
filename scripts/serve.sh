#!/bin/bash
# serve.sh [ini] - set up everything and run the service with its embedded defaults (Debian 12, root).
# development.ini: SQLite in ./var, the local test bed's LDAP and clusters, http://127.0.0.1:6543.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INI="${1:-development.ini}"
cd "$ROOT"
bash scripts/bootstrap.sh
bash scripts/testbed/install.sh
bash scripts/testbed/up.sh
mkdir -p var
.venv/bin/alembic -c "$INI" upgrade head
exec .venv/bin/pserve "$INI"
