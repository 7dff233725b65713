#!/usr/bin/env bash
# What `moat omb` needs to compare with Open MPI: Debian's openmpi-bin (mpirun) and libopenmpi-dev
# (mpicc, to build crates/moat-omb/c/omb_mpi.c). The suite and its tests run this when mpicc or
# mpirun is missing; iproute2 (`ip`, for the veth pair between two network namespaces) too.
set -euo pipefail
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
need=()
command -v mpicc >/dev/null || need+=(libopenmpi-dev)
command -v mpirun >/dev/null || need+=(openmpi-bin)
command -v ip >/dev/null || need+=(iproute2)
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${need[@]}" openssh-client >/dev/null
fi
command -v mpicc >/dev/null && command -v mpirun >/dev/null
