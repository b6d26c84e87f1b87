#!/bin/bash
# test.sh [pytest args] - set up everything and run the whole test suite (Debian 12, root).
#   1. the service's venv (.venv) and build dependencies   scripts/bootstrap.sh
#   2. the test bed's packages, then its servers             scripts/testbed/install.sh, up.sh
#   3. lint, then pytest against the real servers
# Idempotent: a second run only checks what is there and goes straight to the tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
bash scripts/testbed/install.sh
bash scripts/testbed/up.sh
.venv/bin/ruff check hcc_federation tests bench scripts alembic
.venv/bin/ruff format --check hcc_federation tests bench scripts alembic
exec .venv/bin/pytest "$@"
