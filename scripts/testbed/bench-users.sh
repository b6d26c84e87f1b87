#!/bin/bash
# bench-users.sh [COUNT] - add COUNT people (default 18: with alice and bob, the 20 users of issue
#   14's throughput goal) to the running test bed, for benchmarks only: a Unix account with its
#   password and key, an LDAP entry with the same password (member of hpcusers) and a Slurm
#   association. Idempotent. The tests never see them: endpoints.json's "users" stays as it is and
#   these are listed in $TESTBED_STATE/bench-users.json, which bench/common.py reads.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
[ "$(id -u)" = 0 ] || die "bench-users.sh must run as root"
[ -f "$S/endpoints.json" ] || die "the test bed is not up: run scripts/testbed/up.sh first"
count="${1:-18}"
[[ "$count" =~ ^[0-9]+$ ]] && [ "$count" -le 99 ] || die "COUNT must be a number from 0 to 99"
T0=$SECONDS

ldap() { "$1" -x -H "ldap://127.0.0.1:$LDAP_PORT" -D "cn=admin,$LDAP_BASE" -w "$LDAP_ADMIN_PASS" "${@:2}"; }

lines="" names=""
for i in $(seq -f %02g 1 "$count"); do
  name="bench$i" uid=$((10100 + 10#$i)) pw="bench$i-pw-1" full="Bench User$i"
  setup_unix_user "$name" "$uid" "$pw" "$full"
  if ! ldap ldapsearch -b "uid=$name,ou=People,$LDAP_BASE" -s base dn >/dev/null 2>&1; then
    user_ldif "$name" "$uid" "$pw" "$full" 0 | ldap ldapadd >/dev/null
    printf 'dn: cn=hpcusers,ou=Groups,%s\nchangetype: modify\nadd: memberUid\nmemberUid: %s\n' \
      "$LDAP_BASE" "$name" | ldap ldapmodify >/dev/null
  fi
  lines+="$name:$uid:$pw:$full:0;" names+="${names:+,}$name"
done

if [ -n "$names" ]; then
  export SLURM_CONF="$ETC/slurm-${CLUSTERS%% *}/slurm.conf"
  # adds only the missing associations; "Nothing new added" exits 1
  sacctmgr -i add user "$names" Account=research Cluster="$(tr ' ' , <<< "$CLUSTERS")" >/dev/null || true
fi

TESTBED_USERS="$lines" S="$S" LDAP_BASE="$LDAP_BASE" python3 - "$S/bench-users.json" <<'PY'
import json, os, sys
out = []
for line in filter(None, os.environ["TESTBED_USERS"].split(";")):
    name, uid, password, full, _ = line.split(":")
    out.append({"name": name, "uid": int(uid), "password": password, "cn": full, "locked": False,
                "dn": f"uid={name},ou=People,{os.environ['LDAP_BASE']}",
                "key": f"{os.environ['S']}/keys/{name}_ed25519"})
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump(out, f, indent=2)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
PY
log "bench users: $count in $S/bench-users.json after $((SECONDS - T0)) s"
