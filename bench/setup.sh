#!/usr/bin/env bash
# Installs what the benchmarks need beyond scripts/setup.sh, skipping what is there:
# wrk (load generator, Debian) and wasmtime-cli 48 (`wasmtime serve`, the baseline).
set -euo pipefail
say() { printf '\033[1m[bench setup]\033[0m %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

if ! command -v wrk >/dev/null 2>&1; then
  say "apt-get install wrk"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.'; then
  say "cargo install wasmtime-cli 48 (several minutes)"
  cargo install --locked --quiet wasmtime-cli --version 48.0.8
fi
