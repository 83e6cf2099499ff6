#!/usr/bin/env bash
# start-dockerd.sh: make a Docker engine reachable for the lab's docker backend, idempotently.
#
#   - `docker info` already works: do nothing.
#   - otherwise start `dockerd` in the background (its own session, so it outlives this shell),
#     logging to /var/log/dockerd-dsrconform.log, and wait on `docker info` with a deadline
#     (DOCKERD_WAIT seconds, default 60).
#
# dockerd inherits none of the caller's open files: every descriptor above 2 is closed before it
# starts (a caller's lock file held by the engine would stay locked as long as the engine runs).
# The pid file never outlives its dockerd: one naming a process that is gone (or is not dockerd)
# is removed before starting, and it is removed when dockerd exits during the start.
#
# Lab containers run with `--network none`, so the engine started here leaves the host's network
# alone: no docker0 bridge, no iptables rules, no change to net.ipv4.ip_forward (DOCKERD_ARGS
# replaces these flags; `docker build` of docker/Dockerfile needs the default bridge, so use an
# engine of your own for that).
#
# Needs root and the docker.io package (scripts/bootstrap.sh installs it). The engine's pid is in
# /run/dsrconform/dockerd.pid; stop it with `kill "$(cat /run/dsrconform/dockerd.pid)"`.
# DOCKERD_LOG and DOCKERD_PIDFILE choose other paths.
set -euo pipefail

LOG=${DOCKERD_LOG:-/var/log/dockerd-dsrconform.log}
PIDFILE=${DOCKERD_PIDFILE:-/run/dsrconform/dockerd.pid}
WAIT=${DOCKERD_WAIT:-60}
read -r -a ARGS <<<"${DOCKERD_ARGS:---bridge=none --iptables=false --ip-forward=false}"

say() { printf 'start-dockerd: %s\n' "$*"; }
die() { printf 'start-dockerd: error: %s\n' "$*" >&2; exit 1; }

# Whether process $1 exists and has not exited (a zombie has).
running() { grep -q '^State:[[:space:]]*[^ZX]' "/proc/$1/status" 2>/dev/null; }

# The pid in the pid file if that process runs and is a dockerd, else nothing.
live_dockerd() {
  local pid
  [[ -s $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  [[ $pid =~ ^[0-9]+$ ]] && running "$pid" || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]] || return 1
  printf '%s\n' "$pid"
}

# Remove the pid file if it still names $1 (another start may have replaced it meanwhile).
drop_pidfile() {
  [[ -e $PIDFILE && $(cat "$PIDFILE" 2>/dev/null) == "$1" ]] && rm -f "$PIDFILE"
  return 0
}

command -v docker >/dev/null || die "no docker client; fix: apt-get install docker.io"
if docker info >/dev/null 2>&1; then
  say "engine already running"
  exit 0
fi
[[ $EUID -eq 0 ]] || die "the Docker engine is not running and starting it needs root"
command -v dockerd >/dev/null || die "no dockerd; fix: apt-get install docker.io"

if pid=$(live_dockerd); then
  say "dockerd (pid $pid) is starting; waiting"
else
  if [[ -e $PIDFILE ]]; then
    say "removing stale pid file $PIDFILE ($(cat "$PIDFILE" 2>/dev/null || true): not a running dockerd)"
    rm -f "$PIDFILE"
  fi
  mkdir -p "$(dirname "$PIDFILE")" "$(dirname "$LOG")"
  say "starting dockerd ${ARGS[*]} (log: $LOG)"
  (
    # Close every inherited descriptor above 2 (a caller's lock file, bash's own 255), then
    # become dockerd in a session of its own. This subshell is not a process group leader, so
    # setsid execs without forking and $! is dockerd's pid.
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if ((fd > 2)); then eval "exec $fd>&-"; fi
    done
    exec setsid dockerd "${ARGS[@]}" </dev/null >>"$LOG" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PIDFILE"
fi

deadline=$((SECONDS + WAIT))
until docker info >/dev/null 2>&1; do
  if ! running "$pid"; then
    drop_pidfile "$pid"
    tail -n 20 "$LOG" >&2 || true
    die "dockerd exited; see $LOG"
  fi
  ((SECONDS < deadline)) || die "dockerd not answering after ${WAIT} s; see $LOG"
  sleep 0.5
done
say "engine up (pid $pid)"
