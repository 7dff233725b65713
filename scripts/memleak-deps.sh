#!/usr/bin/env bash
# What `moat memleak`'s cross-checks need: a C compiler (for examples/leaky/leaky.c), valgrind and
# heaptrack (with heaptrack_print) from Debian. Its tests and benchmark run this when one is missing.
set -euo pipefail
exec bash "$(dirname "$0")/need.sh" cc=gcc,libc6-dev valgrind=valgrind heaptrack_print=heaptrack
