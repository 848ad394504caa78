#!/usr/bin/env bash
# slurm-down.sh: stop slurmd, slurmctld and munged started by slurm-up.sh (by recorded PID). Idempotent.
# Before stopping, cancels all queued/running jobs (so no job processes outlive slurmd) unless
# SLURM_DOWN_CANCEL=0. Env: SLURM_UP_PIDFILE (default /run/ldifs-slurm.pids).
set -u
PIDFILE=${SLURM_UP_PIDFILE:-/run/ldifs-slurm.pids}
[ -f "$PIDFILE" ] || exit 0
pid_alive() { [ -n "${2:-}" ] && kill -0 "$2" 2>/dev/null && [ "$(cat /proc/$2/comm 2>/dev/null)" = "$1" ]; }
recorded_pid() { awk -v n="$1" '$1==n{print $2}' "$PIDFILE" | tail -n1; }

if [ "${SLURM_DOWN_CANCEL:-1}" = 1 ] && pid_alive slurmctld "$(recorded_pid slurmctld)" \
   && pid_alive slurmd "$(recorded_pid slurmd)"; then
  jobs=$(timeout 5 squeue -h -o %A 2>/dev/null)
  if [ -n "$jobs" ]; then
    timeout 5 scancel $jobs >/dev/null 2>&1
    for _ in $(seq 50); do [ -z "$(timeout 5 squeue -h -t R,CG -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi

rc=0
for name in slurmd slurmctld munged; do
  pid=$(recorded_pid "$name")
  pid_alive "$name" "$pid" || continue
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 150); do pid_alive "$name" "$pid" || break; sleep 0.1; done
  if pid_alive "$name" "$pid"; then
    kill -KILL "$pid" 2>/dev/null; sleep 0.3
    pid_alive "$name" "$pid" && { echo "slurm-down: could not stop $name (pid $pid)" >&2; rc=1; }
  fi
done
[ "$rc" = 0 ] && rm -f "$PIDFILE"
exit $rc
