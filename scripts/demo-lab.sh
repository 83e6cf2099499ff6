#!/usr/bin/env bash
# demo-lab.sh: the lab part of `make demo`. Brings labs/basic.yaml up in network namespaces with
# the reference stack (MUXes, agents, BGP, the HTTP app), fetches through the VIP from the client
# (the X-Server-Id header names the server that answered), streams verified bytes, shows the
# lab, and tears it down whatever happens.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=.venv/bin
NAME=demo

trap '$BIN/dsrconform lab down $NAME >/dev/null 2>&1 || true' EXIT
$BIN/dsrconform lab up labs/basic.yaml --name $NAME
$BIN/dsrconform lab exec client --name $NAME -- curl -s -i --max-time 5 http://198.19.0.10/id
$BIN/dsrconform lab exec client --name $NAME -- $BIN/python -m dsrconform.traffic.probe http \
  --vip 198.19.0.10 --port 80 --conns 50 --bytes 100000 --sources 198.18.1.1,198.18.1.2 \
  | $BIN/python -c 'import json, sys, collections
r = json.load(sys.stdin)
bad = [x for x in r if x["error"]]
print(f"{len(r)} verified streams, {len(bad)} failed, servers:",
      dict(collections.Counter(x["server"] for x in r)))
sys.exit(1 if bad else 0)'
$BIN/dsrconform lab status $NAME
$BIN/dsrconform lab down $NAME
trap - EXIT
