#!/usr/bin/env bash
# Start a real one-node Slurm cluster (munged, slurmctld, slurmd) on this machine,
# without systemd, for tessera's tests. See scripts/slurm/README.md.
#
#   slurm_env=$(scripts/slurm/up.sh) && eval "$slurm_env"   # prints `export SLURM_CONF=...` etc.
#
# Everything else (progress, errors, daemon logs on failure) goes to stderr.
# Idempotent: with the daemons already up and the same configuration it only
# checks the node and prints the variables again; with a changed configuration
# (e.g. another TESSERA_SLURM_MAX_ARRAY_SIZE) it restarts slurmctld and slurmd.
#
# Environment (all optional):
#   TESSERA_SLURM_DIR             work dir for conf, state, spool, logs, pids
#                                 (default /tmp/tessera-slurm)
#   TESSERA_SLURM_MAX_ARRAY_SIZE  slurm.conf MaxArraySize (default 1001: indices 0..1000)
#   TESSERA_SLURM_MIN_JOB_AGE     slurm.conf MinJobAge in seconds (default 7200)
#   TESSERA_SLURM_KILL_WAIT       slurm.conf KillWait: SIGTERM -> SIGKILL delay (default 5)
#   TESSERA_SLURM_CRED_EXPIRE     AuthInfo cred_expire; also the requeue delay (default 15)
#   TESSERA_SLURM_SCHED_PARAMS    slurm.conf SchedulerParameters (default: quick scheduling,
#                                 see README; empty: Slurm's defaults)
#   TESSERA_SLURM_CPUS            pretend the node has this many CPUs (default: real count)
#   TESSERA_SLURM_PORT            SlurmctldPort; SlurmdPort is PORT+1 (default 6817)
#   TESSERA_SLURM_UP_TIMEOUT      seconds to wait for the node to be idle (default 60)
#   TESSERA_SLURM_NO_INSTALL=1    never run apt-get; fail if the packages are missing
set -euo pipefail

log() { printf 'slurm/up: %s\n' "$*" >&2; }
# shellcheck source=scripts/slurm/pids.sh
source "$(dirname "$0")/pids.sh"
die() { printf 'slurm/up: error: %s\n' "$*" >&2; exit 1; }

dir=${TESSERA_SLURM_DIR:-/tmp/tessera-slurm}
max_array=${TESSERA_SLURM_MAX_ARRAY_SIZE:-1001}
min_job_age=${TESSERA_SLURM_MIN_JOB_AGE:-7200}
kill_wait=${TESSERA_SLURM_KILL_WAIT:-5}
cred_expire=${TESSERA_SLURM_CRED_EXPIRE:-15}
sched_params=${TESSERA_SLURM_SCHED_PARAMS-batch_sched_delay=0,sched_min_interval=0,sched_interval=2,bf_interval=1}
cpus=${TESSERA_SLURM_CPUS:-}
port=${TESSERA_SLURM_PORT:-6817}
timeout=${TESSERA_SLURM_UP_TIMEOUT:-60}

for pair in max_array:MAX_ARRAY_SIZE min_job_age:MIN_JOB_AGE kill_wait:KILL_WAIT \
    cred_expire:CRED_EXPIRE port:PORT timeout:UP_TIMEOUT; do
    v=${pair%%:*}
    [[ ${!v} =~ ^[0-9]+$ ]] || die "TESSERA_SLURM_${pair#*:} must be a non-negative integer, got '${!v}'"
done
[[ -z $cpus || $cpus =~ ^[1-9][0-9]*$ ]] || die "TESSERA_SLURM_CPUS must be a positive integer, got '$cpus'"

[[ $(id -u) == 0 ]] || die "must run as root (slurmd launches jobs as their users; these scripts run SlurmUser=root)"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)
# One up.sh/down.sh at a time per work dir (tests may call up.sh concurrently).
exec 9>"$dir/.lock"
flock 9
conf=$dir/slurm.conf
rundir=$dir/run
logdir=$dir/log
mungedir=$dir/munge
socket=$mungedir/munge.socket
# Marker put in the daemons' environment; down.sh uses it to find the slurmstepd
# processes of this cluster (they inherit slurmd's environment).
marker="TESSERA_SLURM_OWNER=$dir"

# ---------------------------------------------------------------- packages
export PATH="$PATH:/usr/sbin:/sbin"
need_install=()
for pair in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need_install+=("${pair#*:}")
done
if ((${#need_install[@]})); then
    [[ ${TESSERA_SLURM_NO_INSTALL:-0} != 1 ]] || die "missing packages: ${need_install[*]} (TESSERA_SLURM_NO_INSTALL=1)"
    command -v apt-get >/dev/null 2>&1 || die "missing packages: ${need_install[*]} and no apt-get on this machine"
    log "installing ${need_install[*]} (apt-get)"
    # Keep the packages' maintainer scripts from starting system services
    # (they would start a system munged / fail on a missing /etc/slurm/slurm.conf).
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    install_rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
                "${need_install[@]}"
    } >"$dir/apt.log" 2>&1 || install_rc=$?
    if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi
    if ((install_rc)); then
        tail -n 30 "$dir/apt.log" >&2
        die "apt-get install ${need_install[*]} failed (exit $install_rc); full log: $dir/apt.log"
    fi
fi
for c in slurmctld slurmd sbatch squeue scontrol sinfo munged; do
    command -v "$c" >/dev/null 2>&1 || die "$c not on PATH after install"
done

# ---------------------------------------------------------------- helpers (pid_alive, stop_pid: pids.sh)
show_logs() {
    local name f
    for name in munged slurmctld slurmd; do
        # The daemon's own log file if it wrote one, else what it printed (log/NAME.out).
        f=$logdir/$name.log
        [[ -s $f ]] || f=$logdir/$name.out
        [[ -s $f ]] || continue
        printf '\n----- %s (last 40 lines) -----\n' "$f" >&2
        tail -n 40 "$f" >&2
    done
}


# start NAME PIDFILE CMD...: start CMD detached (own session), stdin closed, output to log/NAME.out.
start() {
    local name=$1 pidfile=$2 pid i
    shift 2
    # The background child is not a process-group leader, so setsid calls setsid()
    # and execs in place, and env execs too: $! is the daemon's own PID.
    setsid env "$marker" "$@" </dev/null >>"$logdir/$name.out" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$pidfile"
    for ((i = 0; i < 20; i++)); do
        pid_alive "$pidfile" "$name" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    pid_alive "$pidfile" "$name" || { show_logs; die "$name did not start (see $logdir)"; }
}

# Refuse busy ports before starting anything (unless it is this cluster's own daemons).
# port_free PORT: nothing listens on PORT here (bash's /dev/tcp connects when something does).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$port" "$((port + 1))"; do
    if ! pid_alive "$rundir/slurmctld.pid" slurmctld && ! pid_alive "$rundir/slurmd.pid" slurmd && ! port_free "$p"; then
        die "port $p is in use, by another Slurm or another program (a cluster of these scripts under another
TESSERA_SLURM_DIR, e.g. /tmp/tessera-slurm, stops with TESSERA_SLURM_DIR=... scripts/slurm/down.sh);
set TESSERA_SLURM_PORT to use other ports (PORT and PORT+1)"
    fi
done

# ---------------------------------------------------------------- munge
mkdir -p "$rundir" "$logdir" "$mungedir" "$dir/state" "$dir/spool"
chmod 755 "$dir" "$mungedir"   # clients of other users must reach the socket
if [[ ! -s $mungedir/munge.key ]]; then
    log "writing munge key $mungedir/munge.key"
    (umask 077 && dd if=/dev/urandom of="$mungedir/munge.key" bs=1024 count=1 status=none)
fi
chmod 600 "$mungedir/munge.key"

munge_ok() { munge -n --socket="$socket" 2>/dev/null | unmunge --socket="$socket" >/dev/null 2>&1; }
if pid_alive "$rundir/munged.pid" munged && munge_ok; then
    :
else
    stop_pid "$rundir/munged.pid" munged
    rm -f "$socket" "$socket.lock"
    log "starting munged"
    start munged "$rundir/munged.pid" munged --foreground --force \
        --socket="$socket" --key-file="$mungedir/munge.key" \
        --seed-file="$mungedir/munged.seed" \
        --pid-file="$mungedir/munged.daemon.pid"
    for ((i = 0; i < 50; i++)); do munge_ok && break; sleep 0.1; done
    munge_ok || { show_logs; die "munged does not answer on $socket"; }
fi

# ---------------------------------------------------------------- slurm.conf
host=$(hostname -s)
node_line=$(slurmd -C 2>/dev/null | grep '^NodeName=' | head -n 1) ||
    die "slurmd -C printed no NodeName line"
[[ $node_line == "NodeName=$host "* ]] || die "slurmd -C names another host than '$host': $node_line"
slurmd_params="# SlurmdParameters: none (node line is the real hardware)"
if [[ -n $cpus ]]; then
    # Replace the CPU topology by CPUs=N; slurmd must then trust the conf, not the hardware.
    node_line=$(sed -E 's/ (CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+//g' <<<"$node_line")
    node_line="$node_line CPUs=$cpus"
    slurmd_params="SlurmdParameters=config_overrides"
fi

new_conf=$(cat <<EOF
# Written by tessera scripts/slurm/up.sh; rewritten on each run. One node, no systemd,
# no cgroups, no accounting database. See scripts/slurm/README.md.
ClusterName=tessera
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job (scontrol requeue) before it may start again
# (Slurm default 120 s, minimum 5).
AuthInfo=socket=$socket,cred_expire=$cred_expire
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$rundir/slurmctld.daemon.pid
SlurmdPidFile=$rundir/slurmd.daemon.pid
SlurmctldLogFile=$logdir/slurmctld.log
SlurmdLogFile=$logdir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups here: track job processes through /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Finished jobs, one line each, for humans debugging a test (not for tessera to rely on).
JobCompType=jobcomp/filetxt
JobCompLoc=$logdir/jobcomp.txt
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
${sched_params:+SchedulerParameters=$sched_params}
$slurmd_params
MaxArraySize=$max_array
MaxJobCount=100000
MinJobAge=$min_job_age
KillWait=$kill_wait
ReturnToService=2
InactiveLimit=0
NodeName=${node_line#NodeName=} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)

conf_changed=0
if [[ ! -f $conf ]] || [[ $(<"$conf") != "$new_conf" ]]; then
    conf_changed=1
    printf '%s\n' "$new_conf" >"$conf.tmp"
    mv "$conf.tmp" "$conf"
fi
export SLURM_CONF=$conf

# ---------------------------------------------------------------- slurmctld, slurmd
if ((conf_changed)); then
    if pid_alive "$rundir/slurmctld.pid" slurmctld || pid_alive "$rundir/slurmd.pid" slurmd; then
        log "configuration changed: restarting slurmctld and slurmd"
    fi
    stop_pid "$rundir/slurmd.pid" slurmd
    stop_pid "$rundir/slurmctld.pid" slurmctld
fi
if ! pid_alive "$rundir/slurmctld.pid" slurmctld; then
    log "starting slurmctld"
    start slurmctld "$rundir/slurmctld.pid" slurmctld -D -f "$conf"
fi
if ! pid_alive "$rundir/slurmd.pid" slurmd; then
    log "starting slurmd"
    start slurmd "$rundir/slurmd.pid" slurmd -D -f "$conf"
fi

# ---------------------------------------------------------------- wait for the node
deadline=$((SECONDS + timeout))
state=""
resumed=0
while ((SECONDS < deadline)); do
    pid_alive "$rundir/slurmctld.pid" slurmctld || { show_logs; die "slurmctld exited"; }
    pid_alive "$rundir/slurmd.pid" slurmd || { show_logs; die "slurmd exited"; }
    state=$(sinfo -h -n "$host" -o '%T' 2>/dev/null | head -n 1) || state=""
    case $state in
        idle | mixed | allocated | completing) break ;;
        *drain* | *drng* | *fail*)
            # A node left drained by an earlier run (e.g. a killed slurmd): take it back once.
            if ((!resumed)); then
                scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
                resumed=1
            fi
            ;;
    esac
    sleep 0.2
done
case $state in
    idle | mixed | allocated | completing) ;;
    *)
        sinfo -N -l >&2 2>&1 || true
        scontrol show node "$host" >&2 2>&1 || true
        show_logs
        die "node '$host' not idle after ${timeout}s (state: '${state:-no answer from slurmctld}')"
        ;;
esac

log "up: node $host $state (${SECONDS}s); logs in $logdir"
printf 'export SLURM_CONF=%q\n' "$conf"
printf 'export TESSERA_SLURM_DIR=%q\n' "$dir"
printf 'export TESSERA_SLURM_PARTITION=debug\n'
