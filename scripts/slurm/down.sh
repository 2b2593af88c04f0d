#!/usr/bin/env bash
# Stop the one-node Slurm started by up.sh: cancel its jobs, stop slurmd, slurmctld and
# munged by their PIDs, then make sure no slurmstepd (or job process under one) of this
# cluster is left. Exits non-zero if a process of this cluster survives.
#
#   scripts/slurm/down.sh            # keep $TESSERA_SLURM_DIR (state, logs) for inspection
#   scripts/slurm/down.sh --purge    # also delete $TESSERA_SLURM_DIR
#
# Environment: TESSERA_SLURM_DIR (default /tmp/tessera-slurm), as for up.sh.
set -euo pipefail

log() { printf 'slurm/down: %s\n' "$*" >&2; }
# shellcheck source=scripts/slurm/pids.sh
source "$(dirname "$0")/pids.sh"

purge=0
for arg in "$@"; do
    case $arg in
        --purge) purge=1 ;;
        *) log "unknown argument: $arg (usage: down.sh [--purge])"; exit 2 ;;
    esac
done

dir=${TESSERA_SLURM_DIR:-/tmp/tessera-slurm}
if [[ ! -d $dir ]]; then
    log "nothing to stop: $dir does not exist"
    exit 0
fi
dir=$(cd "$dir" && pwd -P)
exec 9>"$dir/.lock"
flock 9
rundir=$dir/run
marker="TESSERA_SLURM_OWNER=$dir"
export SLURM_CONF=$dir/slurm.conf

# 1. Cancel every job of this cluster while the controller is up, so that slurmd's
#    slurmstepd processes end their jobs the normal way (SIGTERM, KillWait, SIGKILL).
if pid_alive "$rundir/slurmctld.pid" slurmctld && [[ -f $SLURM_CONF ]] && command -v squeue >/dev/null 2>&1; then
    mapfile -t jobs < <(squeue -h -o '%F' 2>/dev/null | sort -u)
    if ((${#jobs[@]})); then
        log "cancelling ${#jobs[@]} job(s): ${jobs[*]}"
        scancel "${jobs[@]}" 2>/dev/null || true
        kill_wait=$(sed -n 's/^KillWait=//p' "$SLURM_CONF" | head -n 1)
        deadline=$((SECONDS + ${kill_wait:-30} + 10))
        while ((SECONDS < deadline)) && [[ -n $(squeue -h -o '%i' 2>/dev/null) ]]; do
            sleep 0.2
        done
    fi
fi

# 2. The daemons, by their PIDs.
stop_pid "$rundir/slurmd.pid" slurmd
stop_pid "$rundir/slurmctld.pid" slurmctld
stop_pid "$rundir/munged.pid" munged

# 3. Anything of this cluster still alive: the daemons export $marker, and slurmstepd
#    inherits slurmd's environment. Kill such processes with all their descendants.
own_processes() {
    local p pid
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        # environ is NUL-separated; a file we cannot read (exited, other user) is skipped.
        if tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -qxF "$marker"; then
            echo "$pid"
        fi
    done
}

descendants() {
    local root=$1 stat pid ppid rest
    local -A children=()
    for stat in /proc/[0-9]*/stat; do
        read -r pid rest 2>/dev/null <"$stat" || continue
        rest=${rest##*) }          # skip "(comm)", which may contain spaces
        ppid=$(cut -d' ' -f2 <<<"$rest")
        children[$ppid]+=" $pid"
    done
    local queue=("$root") cur child
    while ((${#queue[@]})); do
        cur=${queue[0]}
        queue=("${queue[@]:1}")
        for child in ${children[$cur]:-}; do
            echo "$child"
            queue+=("$child")
        done
    done
}

mapfile -t left < <(own_processes)
if ((${#left[@]})); then
    victims=()
    for pid in "${left[@]}"; do
        victims+=("$pid")
        mapfile -t -O "${#victims[@]}" victims < <(descendants "$pid")
    done
    for pid in "${victims[@]}"; do
        log "leftover process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || echo '?')"
    done
    kill -TERM "${victims[@]}" 2>/dev/null || true
    sleep 1
    kill -KILL "${victims[@]}" 2>/dev/null || true
    sleep 0.2
fi

mapfile -t still < <(own_processes)
rm -f "$dir/munge/munge.socket" "$dir/munge/munge.socket.lock"
if ((${#still[@]})); then
    log "error: processes of this cluster survived: ${still[*]}"
    exit 1
fi
if ((purge)); then
    rm -rf "$dir"
    log "stopped; removed $dir"
else
    log "stopped; state and logs kept in $dir"
fi
