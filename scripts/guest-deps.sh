#!/usr/bin/env bash
# What the mpk guest test (crates/moat/tests/mpk_guest.rs) needs, fetched by the project itself:
# QEMU (Debian's qemu-system-x86, installed with apt) and a Debian kernel image, downloaded and
# unpacked (not installed) to target/guest/vmlinuz. The test runs this when either is missing.
set -euo pipefail
out="${1:-$(cd "$(dirname "$0")/.." && pwd)/target/guest}"
mkdir -p "$out"
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
if ! command -v qemu-system-x86_64 >/dev/null; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq qemu-system-x86 >/dev/null
fi
if [ ! -s "$out/vmlinuz" ]; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  if [ -z "$pkg" ]; then
    $sudo apt-get update -qq
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  chmod 777 "$tmp"
  (cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null)
  dpkg-deb --fsys-tarfile "$tmp"/"$pkg"_*.deb | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
  mv "$tmp"/boot/vmlinuz-* "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
  echo "kernel: $pkg -> $out/vmlinuz"
fi
