#!/usr/bin/env bash
# What `moat load`'s tests need: Debian's compiled libbpf tools (package `libbpf-tools`: funclatency,
# bashreadline, opensnoop, ..., each with its BPF object embedded and libbpf linked statically) and,
# for the runs of the same tools on the kernel, tracefs mounted at /sys/kernel/tracing; a C compiler
# for the bundled workload (examples/libbpf-tools) and stdbuf. Its tests run this when a tool is
# missing.
set -euo pipefail
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
if ! command -v funclatency >/dev/null && [ ! -x /usr/sbin/funclatency ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    libbpf-tools >/dev/null
fi
if [ -d /sys/kernel/tracing ] && [ ! -e /sys/kernel/tracing/events ]; then
  $sudo mount -t tracefs tracefs /sys/kernel/tracing
fi
bash "$(dirname "$0")/need.sh" cc=gcc,libc6-dev stdbuf=coreutils
[ -x /usr/sbin/funclatency ] || command -v funclatency >/dev/null
