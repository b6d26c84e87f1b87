"""The scripts that do an operation's work on the cluster, and the argv that start or stop them (pure).

The service writes the scripts and their parameters (NUL-separated, so that any name stays literal)
into the operation's private folder, then starts ``run.sh`` as a Slurm job or detached. The script
keeps a ``progress`` file there (rewritten whole, then renamed, so a reader never sees half of it);
the service reads it over SFTP when someone asks (see progress.py). ``recv.sh`` is the receiving end
of a copy between clusters, on the destination, whether the source pushes to it or the service relays.
"""

from __future__ import annotations

import posixpath

# Where operations keep their folders, relative to the user's home (mode 0700 at every level).
ROOT = ".hcc/operations"
# The name a copy has while it is written: hidden, fixed length, in the target's directory (so that the
# final rename stays on one file system); the target appears complete or not at all.
TEMP_PREFIX = ".hcc-op-"

RUN_SCRIPT = r"""#!/bin/bash
# hcc-federation: one long file operation (written by the service: hcc_federation/operations/worker.py)
set -u
export LC_ALL=C
dir=$1
if [ "${2:-}" = --detach ]; then
    # on the login node: a session and process group of its own, which cancel signals as a whole
    setsid bash "$0" "$dir" </dev/null >>"$dir/worker.log" 2>&1 &
    echo "$!"
    exit 0
fi
echo "$$" >"$dir/pid"
mapfile -d '' -t p <"$dir/params"
kind=${p[0]}; src=${p[1]}; dst=${p[2]-}; tmp=${p[3]-}
state=running; bytes_done=0; bytes_total=; files_done=0; files_total=; error=; child=; partial=

report() {
    printf 'state=%s\nbytes_done=%s\nbytes_total=%s\nfiles_done=%s\nfiles_total=%s\nupdated=%s\nerror=%s\n' \
        "$state" "$bytes_done" "$bytes_total" "$files_done" "$files_total" "$(date +%s)" "$error" \
        >"$dir/progress.new" && mv -f -- "$dir/progress.new" "$dir/progress"
}
exists() { [ -e "$1" ] || [ -L "$1" ]; }
size_of() { local n; n=$(du -s -b -- "$1" 2>/dev/null | head -n1 | cut -f1); echo "${n:-0}"; }
count_of() { local n; n=$(du -s --inodes -- "$1" 2>/dev/null | head -n1 | cut -f1); echo "${n:-0}"; }
stderr_tail() { tail -c 400 "$dir/stderr" 2>/dev/null | tr '\n\r' '  '; }
remove_partial() {
    if [ -n "$partial" ] && exists "$partial"; then rm -rf --one-file-system -- "$partial"; fi
}
finish() {
    # the push credential lives no longer than the work it was signed for
    rm -f -- "$dir/push_key" "$dir/push_key-cert.pub"
    state=$1; error=$(printf '%s' "${2-}" | tr '\n\r' '  ' | head -c 900); report; exit 0
}
fail() { remove_partial; finish failed "$1"; }
on_signal() {
    trap '' TERM INT HUP
    # CONT too: a stopped child would never act on TERM, and the wait would never end
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null
        kill -CONT "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    remove_partial
    finish cancelled "cancelled"
}
trap on_signal TERM INT HUP
measure() { :; }
# run "$@" in the background and rewrite the progress file every second until it ends; wait -n
# returns as soon as either the work or the second ends, so the end is seen at once (bash >= 5.1)
watch() {
    "$@" 2>>"$dir/stderr" &
    child=$!
    local rc sleeper ended
    while :; do
        sleep 1 &
        sleeper=$!
        ended=
        wait -n -p ended "$child" "$sleeper"
        rc=$?
        if [ "$ended" = "$child" ]; then
            kill "$sleeper" 2>/dev/null
            child=
            return $rc
        fi
        if [ -e "$dir/cancel" ]; then on_signal; fi
        measure; report
    done
}
totals() { bytes_total=$(size_of "$1"); files_total=$(count_of "$1"); report; }
# rename the finished copy onto the target, never over something that appeared meanwhile
place() {
    mv -T -n -- "$tmp" "$dst" 2>>"$dir/stderr" || fail "could not rename the copy into place: $(stderr_tail)"
    if exists "$tmp"; then fail "already exists: $dst"; fi
    partial=
}
copy_to_temp() {
    partial=$tmp
    measure() { bytes_done=$(size_of "$tmp"); files_done=$(count_of "$tmp"); }
    watch cp -R -p -T -n -- "$src" "$tmp" || fail "cp failed: $(stderr_tail)"
}
pushing() {
    set -o pipefail
    { tar -C "$(dirname -- "$src")" -cf - -- "$(basename -- "$src")" && printf '%s\n' "$TRAILER"; } \
        | dd bs=1M status=progress 2>"$dir/dd.log" \
        | ssh -i "$dir/push_key" -o CertificateFile="$dir/push_key-cert.pub" -o IdentitiesOnly=yes \
            -o IdentityAgent=none -o UserKnownHostsFile="$dir/push_known_hosts" \
            -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes \
            -o PasswordAuthentication=no -o ConnectTimeout=30 -o ServerAliveInterval=30 \
            -p "$port" -l "$user" -- "$host" "bash $remote/recv.sh $remote"
}

TRAILER=HCC-DONE
case $kind in
copy)
    if exists "$dst"; then fail "already exists: $dst"; fi
    totals "$src"
    copy_to_temp
    place
    ;;
move)
    if exists "$dst"; then fail "already exists: $dst"; fi
    totals "$src"
    if [ "$(stat -c %d -- "$src")" = "$(stat -c %d -- "$(dirname -- "$dst")")" ]; then
        # one file system: a rename, at once and whole
        mv -T -n -- "$src" "$dst" 2>>"$dir/stderr" || fail "mv failed: $(stderr_tail)"
        if exists "$src"; then fail "already exists: $dst"; fi
    else
        copy_to_temp
        place
        measure() { :; }
        watch rm -rf --one-file-system -- "$src" \
            || finish failed "copied to $dst but $src could not be removed: $(stderr_tail)"
    fi
    ;;
delete)
    if ! exists "$src"; then fail "no such file or directory: $src"; fi
    totals "$src"
    measure() {
        bytes_done=$((bytes_total - $(size_of "$src")))
        files_done=$((files_total - $(count_of "$src")))
    }
    watch rm -rf --one-file-system -- "$src" || fail "rm failed: $(stderr_tail)"
    ;;
push)
    host=${p[4]}; port=${p[5]}; user=${p[6]}; remote=${p[7]}
    totals "$src"
    measure() {
        local n
        n=$(tr '\r' '\n' <"$dir/dd.log" 2>/dev/null | grep -o '^[0-9]* bytes' | tail -n1 | cut -d' ' -f1)
        bytes_done=${n:-0}
        if [ "$bytes_done" -gt "$bytes_total" ]; then bytes_done=$bytes_total; fi
    }
    watch pushing || fail "the copy to $host failed: $(stderr_tail)"
    ;;
*)
    fail "unknown kind $kind"
    ;;
esac
bytes_done=$bytes_total; files_done=$files_total
finish done
"""

RECEIVE_SCRIPT = r"""#!/bin/bash
# hcc-federation: the receiving end of a copy between clusters (hcc_federation/operations/worker.py)
set -u
export LC_ALL=C
dir=$1
mapfile -d '' -t p <"$dir/recv_params"
dst=${p[0]}; tmp=${p[1]}; name=${p[2]}
exists() { [ -e "$1" ] || [ -L "$1" ]; }
cleanup() { rm -rf --one-file-system -- "$tmp"; }
trap 'cleanup; exit 143' TERM INT HUP PIPE
if exists "$dst"; then echo "already exists: $dst" >&2; exit 17; fi
mkdir -m 700 -- "$tmp" || exit 1
if ! tar -C "$tmp" -xpf -; then cleanup; echo "the archive could not be unpacked" >&2; exit 1; fi
# tar takes an archive cut at a block boundary for a whole one: only the sender's trailer, written
# after its tar succeeded, says that everything came
IFS= read -r trailer || trailer=
if [ "$trailer" != HCC-DONE ]; then cleanup; echo "the sender did not finish" >&2; exit 1; fi
if ! exists "$tmp/$name"; then cleanup; echo "nothing arrived" >&2; exit 1; fi
if ! mv -T -n -- "$tmp/$name" "$dst"; then cleanup; exit 1; fi
if exists "$tmp/$name"; then cleanup; echo "already exists: $dst" >&2; exit 17; fi
rmdir -- "$tmp"
"""


# What the sender writes after the archive once its tar succeeded (see recv.sh).
TRAILER = b"HCC-DONE\n"


def operation_dir(home: str, operation_id: str) -> str:
    """The operation's private folder on a cluster, under the user's home."""
    return posixpath.join(home, ROOT, operation_id)


def remote_dir(operation_id: str) -> str:
    """The same folder relative to the home: what an SSH command on the destination is given."""
    return posixpath.join(ROOT, operation_id)


def temp_path(to: str, operation_id: str) -> str:
    """Where a copy onto ``to`` is written before its final rename."""
    return posixpath.join(posixpath.dirname(to), TEMP_PREFIX + operation_id)


def encode_params(*values: str) -> bytes:
    """Parameters as the scripts read them (``mapfile -d ''``): each value NUL-terminated."""
    for value in values:
        if "\x00" in value:
            raise ValueError("a parameter cannot hold a NUL")
    return b"".join(value.encode("utf-8") + b"\x00" for value in values)


def run_params(kind: str, path: str, to: str | None, temp: str | None) -> bytes:
    return encode_params(kind, path, to or "", temp or "")


def push_params(path: str, to: str, temp: str, host: str, port: int, user: str, remote: str) -> bytes:
    return encode_params("push", path, to, temp, host, str(port), user, remote)


def receive_params(to: str, temp: str, name: str) -> bytes:
    return encode_params(to, temp, name)


def sbatch_argv(work_dir: str, partition: str, time_limit_minutes: int) -> list[str]:
    """``sbatch`` of run.sh in the transfer partition; ``--parsable`` prints the job id alone."""
    return [
        "sbatch",
        "--parsable",
        f"--partition={partition}",
        f"--time={time_limit_minutes}",
        "--job-name=hcc-operation",
        "--ntasks=1",
        f"--chdir={work_dir}",
        f"--output={work_dir}/worker.log",
        posixpath.join(work_dir, "run.sh"),
        work_dir,
    ]


def detach_argv(work_dir: str) -> list[str]:
    """run.sh restarting itself in a session of its own on the login node; it prints that pid."""
    return ["bash", posixpath.join(work_dir, "run.sh"), work_dir, "--detach"]


def receive_argv(operation_id: str) -> list[str]:
    """recv.sh on the destination, reading the archive on stdin (the relay's command)."""
    folder = remote_dir(operation_id)
    return ["bash", posixpath.join(folder, "recv.sh"), folder]


def archive_argv(path: str) -> list[str]:
    """``tar`` of one file or tree to stdout, named by its last component (the relay's source)."""
    return [
        "env",
        "LC_ALL=C",
        "tar",
        "-C",
        posixpath.dirname(path) or "/",
        "-cf",
        "-",
        "--",
        posixpath.basename(path),
    ]


def cancel_argv(*, job_id: str | None, pid: int | None) -> list[str] | None:
    """What stops the worker: scancel of its job, or TERM to its whole process group."""
    if job_id:
        return ["scancel", job_id]
    if pid:
        return ["kill", "-TERM", "--", f"-{pid}"]
    return None


def job_alive_argv(job_id: str) -> list[str]:
    return ["squeue", "--noheader", "--format=%T", f"--jobs={job_id}"]


def process_alive_argv(pid: int) -> list[str]:
    return ["ps", "-o", "args=", "-p", str(pid)]


def size_argv(path: str) -> list[str]:
    return ["env", "LC_ALL=C", "du", "-s", "-b", "--", path]


def count_argv(path: str) -> list[str]:
    return ["env", "LC_ALL=C", "du", "-s", "--inodes", "--", path]


def remove_argv(path: str) -> list[str]:
    return ["env", "LC_ALL=C", "rm", "-r", "-f", "--one-file-system", "--", path]
