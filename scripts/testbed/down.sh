#!/bin/bash
# down.sh [--purge] - stop what up.sh started, in reverse order, by our pid files only (root).
#   --purge  also delete the state dir ($TESTBED_STATE). The Unix users are kept.
set -uo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
[ "$(id -u)" = 0 ] || die "down.sh must run as root"
T0=$SECONDS

# cancel the jobs of our clusters first, so that no job process outlives its slurmd
for c in $CLUSTERS; do
  conf="$ETC/slurm-$c/slurm.conf"
  is_running "slurmctld-$c" || continue
  ids="$(SLURM_CONF="$conf" squeue -h -o %i 2>/dev/null | paste -sd' ')"
  [ -n "$ids" ] || continue
  log "$c: cancelling jobs $ids"
  # shellcheck disable=SC2086  # one argument per job id
  SLURM_CONF="$conf" scancel $ids || true
  for _ in $(seq 1 30); do
    [ -z "$(SLURM_CONF="$conf" squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ] && break
    sleep 0.5
  done
done

if [ -f "$RUN/started" ]; then
  for name in $(tac "$RUN/started"); do stop_daemon "$name"; done
  rm -f "$RUN/started"
else
  log "nothing recorded in $RUN/started"
fi

if [ "${1:-}" = --purge ]; then
  case "$S" in /|/var|/var/lib|/tmp|/home|"") die "refusing to purge '$S'";; esac
  rm -rf "$S" && log "purged $S"
fi
log "down in $((SECONDS - T0)) s"
