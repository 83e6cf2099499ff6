#!/usr/bin/env bash
# bootstrap.sh: make this checkout ready to run, on a fresh Debian 12 (bookworm), idempotently.
#
#   1. Debian packages: the BPF toolchain (clang, llvm, libbpf-dev, bpftool), the lab's tools
#      (iproute2, ethtool, nftables, tcpdump, bird2 for the labs' BGP, curl, netsniff-ng for
#      trafgen, the SYN flood baseline of `dsrconform bench traffic`), the docker
#      backend's engine and image builder (docker.io, debootstrap), headless Chromium and its
#      driver (chromium, chromium-driver: the HTML report's browser test) and what building the
#      venv needs. apt is touched only when one of them is missing (checked with dpkg-query), and then
#      needs root. The Docker engine is not started here: scripts/start-dockerd.sh does that, for
#      the docker backend only (`make test` runs it).
#   2. .venv: created with python3 (>= 3.11; override with PYTHON=...) when missing.
#   3. `pip install -e '.[dev]'` when pyproject.toml changed since the last install (a stamp in
#      .venv holds its hash).
#
# It mounts nothing, creates no namespace and touches no network interface.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(clang llvm libbpf-dev bpftool iproute2 ethtool nftables tcpdump bird2 curl
          netsniff-ng docker.io debootstrap python3-venv python3-dev gcc make git
          chromium chromium-driver nginx-light)
PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.dsrconform-installed

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

# --- 1. Debian packages -------------------------------------------------------------------------
command -v dpkg-query >/dev/null || die "dpkg-query not found: this script targets Debian 12; \
install the equivalents of: ${PACKAGES[*]}"
missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  [[ $EUID -eq 0 ]] || die "missing Debian packages: ${missing[*]}; run as root (make ... in a root shell) \
or install them with: apt-get install ${missing[*]}"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages with daemons (bird2, docker.io) must not start or enable them: the labs run their
  # own BIRDs, and a default dockerd would add a bridge and firewall rules to the host. Debian's
  # policy-rc.d refuses service starts during this install only (an existing one is respected).
  guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  trap '[[ -n $guard ]] && rm -f "$guard"' EXIT
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [[ -n $guard ]]; then rm -f "$guard"; guard=""; fi
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    for unit in bird docker docker.socket; do
      pkg=$([[ $unit == bird ]] && echo bird2 || echo docker.io)
      if [[ " ${missing[*]} " == *" $pkg "* ]]; then
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
      fi
    done
  fi
else
  say "Debian packages present"
fi

# --- 2. virtual environment ---------------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install python3 (>= 3.11)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); dsrconform needs >= 3.11 (set PYTHON=python3.11)"
  say "creating $VENV with $("$PYTHON" -V 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi

# --- 3. the package and its dev tools -----------------------------------------------------------
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [[ $want != "$have" ]]; then
  say "installing dsrconform into $VENV (pyproject.toml changed)"
  "$VENV/bin/python" -m pip install -q -e '.[dev]'
  printf '%s\n' "$want" >"$STAMP"
else
  say "$VENV up to date"
fi
