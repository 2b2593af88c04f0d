# Sourced by up.sh and down.sh: the daemons are found and stopped by the PIDs in their pid files.
# The caller defines log().

# pid_alive FILE NAME: the PID in FILE is alive and is the program NAME.
pid_alive() {
    local pid stat
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$2" ]] || return 1
    # A zombie (exited, not yet reaped by init) counts as dead.
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# stop_pid FILE NAME: TERM, wait up to 10 s, then KILL; the pid file is removed.
stop_pid() {
    local pid i
    pid_alive "$1" "$2" || { rm -f "$1"; return 0; }
    pid=$(<"$1")
    log "stopping $2 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        pid_alive "$1" "$2" || break
        sleep 0.1
    done
    if pid_alive "$1" "$2"; then
        log "$2 (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$1"
}
