#!/usr/bin/env bash
# Stop the single-node test cluster started by tests/slurm/start.sh: slurmd, slurmctld, munged.
#
#   tests/slurm/stop.sh                stop all three
#   tests/slurm/stop.sh --slurm-only   leave munged running (start.sh uses this to restart Slurm)
#
# Daemons are stopped by the process ids in their pid files, nothing else is touched; packages,
# configuration and Slurm's saved state stay, so start.sh brings the same cluster back quickly.
set -euo pipefail

CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGED_PID=/run/munge/munged.pid

log() { echo "[slurm/stop] $*"; }

stop_pidfile() { # name pidfile
    local name=$1 file=$2 pid
    if [[ ! -s $file ]] || ! kill -0 "$(cat "$file")" 2>/dev/null; then
        log "$name not running"
        return 0
    fi
    pid=$(cat "$file")
    kill -TERM "$pid"
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        log "$name (pid $pid) did not stop in 30s: killed"
    else
        log "stopped $name (pid $pid)"
    fi
    rm -f "$file"
}

stop_pidfile slurmd "$SLURMD_PID"
stop_pidfile slurmctld "$CTLD_PID"
if [[ ${1:-} != --slurm-only ]]; then
    stop_pidfile munged "$MUNGED_PID"
fi
