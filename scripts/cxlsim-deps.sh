#!/usr/bin/env bash
# What `moat cxlsim --mode exact` and its tests need: a C compiler (for examples/cxlsim/membench.c)
# and valgrind (its lackey tool traces every access) from Debian. Its tests and benchmark say to
# run this when one is missing.
set -euo pipefail
exec bash "$(dirname "$0")/need.sh" cc=gcc,libc6-dev valgrind=valgrind
