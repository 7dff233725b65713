#!/usr/bin/env bash
# What `moat memleak`'s cross-checks need: a C compiler (for examples/leaky/leaky.c), valgrind and
# heaptrack (with heaptrack_print) from Debian. Its tests and benchmark run this when one is missing.
set -euo pipefail
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v valgrind >/dev/null || need+=(valgrind)
command -v heaptrack_print >/dev/null || need+=(heaptrack)
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi
command -v cc >/dev/null && command -v valgrind >/dev/null && command -v heaptrack_print >/dev/null
