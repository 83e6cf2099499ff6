#!/usr/bin/env bash
# start-dockerd.sh: make a Docker engine reachable for the lab's docker backend, idempotently.
#
#   - `docker info` already works: do nothing.
#   - otherwise start `dockerd` in the background (its own session, so it outlives this shell),
#     logging to /var/log/dockerd-dsrconform.log, and wait on `docker info` with a deadline
#     (DOCKERD_WAIT seconds, default 60).
#
# Lab containers run with `--network none`, so the engine started here leaves the host's network
# alone: no docker0 bridge, no iptables rules, no change to net.ipv4.ip_forward (DOCKERD_ARGS
# replaces these flags; `docker build` of docker/Dockerfile needs the default bridge, so use an
# engine of your own for that).
#
# Needs root and the docker.io package (scripts/bootstrap.sh installs it). The engine's pid is in
# /run/dsrconform/dockerd.pid; stop it with `kill "$(cat /run/dsrconform/dockerd.pid)"`.
set -euo pipefail

LOG=/var/log/dockerd-dsrconform.log
PIDFILE=/run/dsrconform/dockerd.pid
WAIT=${DOCKERD_WAIT:-60}
read -r -a ARGS <<<"${DOCKERD_ARGS:---bridge=none --iptables=false --ip-forward=false}"

say() { printf 'start-dockerd: %s\n' "$*"; }
die() { printf 'start-dockerd: error: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "no docker client; fix: apt-get install docker.io"
if docker info >/dev/null 2>&1; then
  say "engine already running"
  exit 0
fi
[[ $EUID -eq 0 ]] || die "the Docker engine is not running and starting it needs root"
command -v dockerd >/dev/null || die "no dockerd; fix: apt-get install docker.io"

if [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  say "dockerd (pid $(cat "$PIDFILE")) is starting; waiting"
else
  mkdir -p "$(dirname "$PIDFILE")"
  say "starting dockerd ${ARGS[*]} (log: $LOG)"
  setsid dockerd "${ARGS[@]}" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
fi

deadline=$((SECONDS + WAIT))
until docker info >/dev/null 2>&1; do
  if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    tail -n 20 "$LOG" >&2 || true
    die "dockerd exited; see $LOG"
  fi
  ((SECONDS < deadline)) || die "dockerd not answering after ${WAIT} s; see $LOG"
  sleep 0.5
done
say "engine up (pid $(cat "$PIDFILE"))"
