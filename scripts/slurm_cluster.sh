#!/usr/bin/env bash
# A local one-node SLURM cluster with job accounting, for the SLURM test tier (pytest -m slurm)
# and for trying hydra/launcher=slurm on one machine. Debian/Ubuntu, as root.
#
#   bash scripts/slurm_cluster.sh start    # installs what is missing (apt), starts it; idempotent
#   bash scripts/slurm_cluster.sh stop     # stops the daemons this script started
#   bash scripts/slurm_cluster.sh status
#
# Daemons: munged, MariaDB, slurmdbd (so sacct, submitit's status source, works), slurmctld and
# slurmd. No cgroups or systemd: proctrack/linuxproc and task/none. KillWait and the credential
# lifetime are lowered so that a requeued job starts again in seconds (default: ~2.5 min). The
# node offers 4 CPUs per core: the test tier's jobs are small and mostly start up or wait, so
# they run side by side rather than one after another.
# It writes /etc/slurm/slurm.conf and slurmdbd.conf, and refuses to replace ones it did not write.
set -euo pipefail

MARK="# written by rdsweep scripts/slurm_cluster.sh"
ETC=/etc/slurm
RUN=/run/rdsweep-slurm
LOG=/var/log/rdsweep-slurm
STATE=/var/lib/rdsweep-slurm
DB_SOCKET=/run/mysqld/mysqld.sock
HOST=$(hostname -s)

die() { echo "slurm_cluster.sh: error: $*" >&2; exit 1; }
pidfile() {  # each daemon writes its own, as its own user
  case $1 in munged) echo /run/munge/munged.pid ;; mariadb) echo /run/mysqld/mysqld.pid ;;
    *) echo "$RUN/$1.pid" ;; esac
}
running() { [ -f "$(pidfile "$1")" ] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }
wait_for() {  # wait_for WHAT COMMAND...: up to 30 s
  local what=$1; shift
  for _ in $(seq 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "$what did not come up; see $LOG/"
}

install() {
  local missing=0
  for cmd in munged mariadbd slurmdbd slurmctld slurmd sbatch sacct; do
    command -v "$cmd" >/dev/null || missing=1
  done
  [ "$missing" = 0 ] && return
  [ "$(id -u)" = 0 ] || die "installing SLURM needs root (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm slurmdbd munge mariadb-server >/dev/null
}

write_config() {
  for f in slurm.conf slurmdbd.conf; do
    if [ -f "$ETC/$f" ] && ! grep -qF "$MARK" "$ETC/$f"; then
      die "$ETC/$f exists and was not written by this script; not replacing it"
    fi
  done
  local cpus mem_mb old
  old=$(cat "$ETC/slurm.conf" 2>/dev/null || true)
  cpus=$(nproc)
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  mkdir -p "$ETC" "$RUN" "$LOG" "$STATE/ctld" "$STATE/d"
  chown slurm:slurm "$RUN" "$LOG" "$STATE/ctld"
  cat > "$ETC/slurm.conf" <<EOF
$MARK
ClusterName=rdsweep
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
KillWait=2
SlurmdParameters=config_overrides
ReturnToService=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$((4 * cpus)) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat > "$ETC/slurmdbd.conf" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm "$ETC/slurmdbd.conf"
  chmod 600 "$ETC/slurmdbd.conf"
  # a changed slurm.conf: the start below restarts the daemons that read it
  if [ "$old" != "$(cat "$ETC/slurm.conf")" ]; then stop_daemon slurmd; stop_daemon slurmctld; fi
}

start() {
  install
  write_config
  if ! running munged; then
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- munged
  fi
  wait_for munged bash -c "munge -n | unmunge"
  if ! running mariadb; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    setsid mariadbd --user=mysql --socket="$DB_SOCKET" --pid-file="$(pidfile mariadb)" \
      --skip-networking --log-error="$LOG/mariadb.log" </dev/null >/dev/null 2>&1 &
    wait_for MariaDB mariadb-admin --socket="$DB_SOCKET" ping
    mariadb --socket="$DB_SOCKET" -e "
      CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  fi
  running slurmdbd || slurmdbd
  wait_for slurmdbd sacctmgr -n list cluster
  sacctmgr -n list cluster format=cluster | grep -qw rdsweep \
    || sacctmgr -i add cluster rdsweep >/dev/null
  running slurmctld || runuser -u slurm -- slurmctld
  running slurmd || slurmd
  wait_for "the node" bash -c "sinfo -h -o %t | grep -qE '^(idle|mix|alloc)'"
  echo "SLURM up: node $HOST, $((4 * $(nproc))) CPUs, partition debug, accounting in MariaDB (logs: $LOG)"
}

stop_daemon() {
  local pid
  running "$1" || return 0
  pid=$(cat "$(pidfile "$1")")
  kill "$pid"
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
}

stop() {
  for name in slurmd slurmctld slurmdbd mariadb munged; do stop_daemon "$name"; done
  echo "SLURM stopped"
}

status() {
  scontrol ping && sinfo
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: bash scripts/slurm_cluster.sh start|stop|status" ;;
esac
