#!/bin/bash
# status.sh - the test bed's daemons (from our pid files) with their resident memory; exit 1 if one is down.
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
[ -f "$RUN/started" ] || { echo "test bed not started (run scripts/testbed/up.sh)"; exit 1; }
total=0; rc=0
printf '%-18s %-8s %-6s %10s\n' NAME PID STATE RSS_KiB
while read -r name; do
  pid="$(cat "$RUN/$name.pid" 2>/dev/null || echo -)"
  if is_running "$name"; then
    rss="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"; total=$((total + rss))
    printf '%-18s %-8s %-6s %10s\n' "$name" "$pid" up "$rss"
  else
    printf '%-18s %-8s %-6s %10s\n' "$name" "$pid" DOWN -; rc=1
  fi
done < "$RUN/started"
printf '%-18s %-8s %-6s %10s  (%d MiB)\n' TOTAL "" "" "$total" $((total / 1024))
exit $rc
