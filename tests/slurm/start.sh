#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for tests/test_slurm.py.
#
#   tests/slurm/start.sh        install (if missing), configure, start, verify; safe to run again
#   tests/slurm/stop.sh         stop the daemons
#
# Debian/Ubuntu only (apt-get), as root. Everything runs on this host: munged, slurmctld, slurmd;
# one node named after `hostname -s` with this machine's CPUs, 90 % of its memory and two fake
# GPUs (character devices aliasing /dev/null: Slurm schedules them, nothing can compute on them);
# partitions $SLURM_TEST_PARTITION (default "debug"; the default partition) and
# $SLURM_TEST_GPU_PARTITION (default "gpu"), both on that node. No accounting database:
# sacct does not work, so Snakemake must poll with `--slurm-status-command squeue`, and
# MinJobAge=3600 keeps finished jobs visible to squeue (and the tests) for an hour.
#
# Exit status: 0 cluster up and verified; 2 Slurm cannot be installed here (not root, no
# apt-get, package install failed: callers may skip); 1 installed but does not come up (see the
# logs named in the message).
set -euo pipefail

PARTITION=${SLURM_TEST_PARTITION:-debug}
GPU_PARTITION=${SLURM_TEST_GPU_PARTITION:-gpu}   # same node, for rules sent to a GPU partition
NODE=$(hostname -s)
TIMEOUT=${SLURM_TEST_TIMEOUT:-60}           # seconds to wait for each daemon / the node
CONF_DIR=/etc/slurm
STATE_DIR=/var/lib/slurm
LOG_DIR=/var/log/slurm
GPU_DEVICES=(/dev/karyosr-fake-gpu0 /dev/karyosr-fake-gpu1)
GPU_TYPE=${SLURM_TEST_GPU_TYPE:-fake}        # the "GPU model": --gpus=fake:1 selects them
MUNGE_KEY=/etc/munge/munge.key
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGED_PID=/run/munge/munged.pid

log() { echo "[slurm/start] $*"; }
die() {
    local code=$1
    shift
    echo "[slurm/start] ERROR: $*" >&2
    exit "$code"
}
pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

SECONDS=0

# --- 1. packages ---------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die 2 "must run as root (it installs packages and starts system daemons)"

missing=()
command -v munged >/dev/null || missing+=(munge)
command -v slurmctld >/dev/null || missing+=(slurmctld)
command -v slurmd >/dev/null || missing+=(slurmd)
command -v sbatch >/dev/null && command -v sinfo >/dev/null || missing+=(slurm-client)
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die 2 "Slurm is not installed and there is no apt-get to install it (${missing[*]})"
    log "installing ${missing[*]} (apt-get, no recommends)"
    # Keep the packages' maintainer scripts from starting daemons with the stock config: we start
    # them ourselves below. Docker-style images already have such a policy-rc.d; if not, add one
    # for the duration of the install only.
    own_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    install_log=$(mktemp /tmp/slurm-install.XXXXXX.log)
    export DEBIAN_FRONTEND=noninteractive
    status=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$install_log" 2>&1 || status=$?
    [[ -n $own_policy ]] && rm -f /usr/sbin/policy-rc.d
    if ((status)); then
        tail -n 20 "$install_log" >&2
        die 2 "could not install Slurm (apt-get exited $status; full log: $install_log)"
    fi
    rm -f "$install_log"
    log "installed: $(dpkg-query -W -f='${Package} ${Version}  ' "${missing[@]}")"
else
    log "packages already installed ($(slurmctld -V))"
fi

# --- 2. configuration ----------------------------------------------------------------------
# The node line from what slurmd detects on this machine, memory lowered so that slurmd never
# finds less than it was promised (the node would be drained).
hw=$(slurmd -C 2>/dev/null | head -n 1 || true)
field() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
cpus=$(field CPUs)
sockets=$(field SocketsPerBoard)
cores=$(field CoresPerSocket)
threads=$(field ThreadsPerCore)
mem_total=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
real_memory=$((mem_total * 9 / 10))
if [[ -n $cpus && -n $sockets && -n $cores && -n $threads ]]; then
    node_hw="CPUs=$cpus Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads"
else
    cpus=$(nproc)
    node_hw="CPUs=$cpus"
fi

mkdir -p "$CONF_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$LOG_DIR"

new_conf=$(mktemp)
new_gres=$(mktemp)
trap 'rm -f "$new_conf" "$new_gres"' EXIT
cat >"$new_conf" <<EOF
# Written by tests/slurm/start.sh (karyosr): a single-node test cluster. Rewritten on every start.
ClusterName=karyosr-test
# Addresses pinned to loopback: works whether or not the host name resolves.
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# No cgroups in a container/VM without systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct cannot answer, Snakemake must poll with squeue ...
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# ... which sees finished jobs only for MinJobAge seconds (the tests check them afterwards).
MinJobAge=3600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
MpiDefault=none
MailProg=/bin/true
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 $node_hw RealMemory=$real_memory Gres=gpu:$GPU_TYPE:${#GPU_DEVICES[@]} State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=$GPU_PARTITION Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
cat >"$new_gres" <<EOF
# Written by tests/slurm/start.sh (karyosr): two fake GPUs of type $GPU_TYPE, device nodes that alias /dev/null.
AutoDetect=off
NodeName=$NODE Name=gpu Type=$GPU_TYPE File=$(IFS=,; echo "${GPU_DEVICES[*]}")
EOF

for dev in "${GPU_DEVICES[@]}"; do
    if [[ ! -c $dev ]]; then
        rm -f "$dev"
        mknod -m 666 "$dev" c 1 3
        log "created fake GPU device $dev (c 1 3, like /dev/null)"
    fi
done

changed=
for pair in "$new_conf:$CONF_DIR/slurm.conf" "$new_gres:$CONF_DIR/gres.conf"; do
    src=${pair%%:*} dst=${pair#*:}
    if ! cmp -s "$src" "$dst"; then
        install -m 644 "$src" "$dst"
        changed=1
        log "wrote $dst"
    fi
done
[[ -n $changed ]] || log "configuration unchanged ($CONF_DIR/slurm.conf, gres.conf)"
log "node $NODE: $node_hw RealMemory=$real_memory Gres=gpu:$GPU_TYPE:${#GPU_DEVICES[@]}; partitions $PARTITION (default), $GPU_PARTITION"

# --- 3. munge ------------------------------------------------------------------------------
if [[ ! -s $MUNGE_KEY ]]; then
    mkdir -p "$(dirname "$MUNGE_KEY")"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$MUNGE_KEY" --force
    else
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
    log "created munge key $MUNGE_KEY"
fi
chown munge:munge "$MUNGE_KEY" "$(dirname "$MUNGE_KEY")"
chmod 0400 "$MUNGE_KEY"
chmod 0700 "$(dirname "$MUNGE_KEY")"
for dir in /run/munge /var/log/munge /var/lib/munge; do
    mkdir -p "$dir"
    chown munge:munge "$dir"
done
chmod 0755 /run/munge

if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running"
else
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGED_PID"
    runuser -u munge -- munged
    for ((i = 0; i < TIMEOUT * 2; i++)); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || die 1 "munged does not answer (see /var/log/munge/munged.log)"
    log "started munged"
fi

# --- 4. Slurm daemons ----------------------------------------------------------------------
if [[ -n $changed ]] && { pid_alive "$CTLD_PID" || pid_alive "$SLURMD_PID"; }; then
    log "configuration changed: restarting slurmctld and slurmd"
    "$(dirname "$0")/stop.sh" --slurm-only
fi

if pid_alive "$CTLD_PID"; then
    log "slurmctld already running (pid $(cat "$CTLD_PID"))"
else
    slurmctld
    log "started slurmctld"
fi
for ((i = 0; i < TIMEOUT * 2; i++)); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && break
    sleep 0.5
done
scontrol ping 2>/dev/null | grep -q 'is UP' || die 1 "slurmctld does not answer (see $LOG_DIR/slurmctld.log)"

if pid_alive "$SLURMD_PID"; then
    log "slurmd already running (pid $(cat "$SLURMD_PID"))"
else
    slurmd
    log "started slurmd"
fi

# --- 5. wait for the node, then run real jobs -----------------------------------------------
state=
resumed=
for ((i = 0; i < TIMEOUT * 2; i++)); do
    state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1)
    case $state in
        idle | mixed | allocated | completing) break ;;
        down | drained | draining | fail | failing)
            # Left down by an earlier run (stale state in StateSaveLocation): the daemons answer
            # (no trailing "*"), so it can go back to service.
            if [[ -z $resumed ]]; then
                scontrol update NodeName="$NODE" State=RESUME || true
                resumed=1
                log "node was $state: resumed it"
            fi
            ;;
    esac
    sleep 0.5
done
case $state in
    idle | mixed | allocated | completing) log "node $NODE is $state" ;;
    *)
        sinfo -N -l >&2 || true
        scontrol show node "$NODE" >&2 || true
        die 1 "node $NODE not up after ${TIMEOUT}s (state '${state:-none}'; see $LOG_DIR/slurmd.log and $LOG_DIR/slurmctld.log)"
        ;;
esac

out=$(timeout "$TIMEOUT" srun -p "$PARTITION" -N 1 -n 1 -t 1 hostname 2>&1) ||
    die 1 "srun hostname failed: $out"
[[ $out == "$NODE"* ]] || die 1 "srun hostname printed '$out', expected '$NODE'"
log "srun hostname: $out"
out=$(timeout "$TIMEOUT" srun -p "$PARTITION" -N 1 -n 1 -t 1 --gpus=1 printenv CUDA_VISIBLE_DEVICES 2>&1) ||
    die 1 "srun --gpus=1 failed: $out"
log "srun --gpus=1: ok (CUDA_VISIBLE_DEVICES=$out)"
out=$(timeout "$TIMEOUT" srun -p "$GPU_PARTITION" -N 1 -n 1 -t 1 --gpus="$GPU_TYPE:2" printenv CUDA_VISIBLE_DEVICES 2>&1) ||
    die 1 "srun -p $GPU_PARTITION --gpus=$GPU_TYPE:2 failed: $out"
log "srun -p $GPU_PARTITION --gpus=$GPU_TYPE:2: ok (CUDA_VISIBLE_DEVICES=$out)"
log "Slurm is up: partitions $PARTITION (default) and $GPU_PARTITION, node $NODE ($cpus CPUs, ${#GPU_DEVICES[@]} fake GPUs of type $GPU_TYPE); took ${SECONDS}s"
