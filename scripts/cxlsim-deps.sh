#!/usr/bin/env bash
# What `moat cxlsim --mode exact` and its tests need: a C compiler (for examples/cxlsim/membench.c)
# and valgrind (its lackey tool traces every access) from Debian. Its tests and benchmark say to
# run this when one is missing.
set -euo pipefail
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v valgrind >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi
command -v cc >/dev/null && command -v valgrind >/dev/null
