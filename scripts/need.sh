#!/usr/bin/env bash
# Installs from Debian what provides each missing command, then checks that every one is there.
# Arguments: COMMAND=PACKAGE[,PACKAGE...], e.g. `cc=gcc,libc6-dev valgrind=valgrind`. The deps
# scripts of the tools' tests and benchmarks (`*-deps.sh`) call it.
set -euo pipefail
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
need=()
for spec in "$@"; do
  if ! command -v "${spec%%=*}" >/dev/null; then
    IFS=, read -r -a pkgs <<<"${spec#*=}"
    need+=("${pkgs[@]}")
  fi
done
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi
for spec in "$@"; do
  command -v "${spec%%=*}" >/dev/null
done
