#!/bin/sh
# The README's two quick-start commands: `tools/setup.sh serve` builds compressd and runs it in
# the foreground on 127.0.0.1:8420 with its state in ./var; `tools/setup.sh test` builds it with
# sanitizers and runs the whole test suite. Each installs what is missing (Debian 12, as root).
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)

BUILD_DEPS="build-essential autoconf automake pkg-config libmicrohttpd-dev libjansson-dev \
libuv1-dev libsqlite3-dev libopenblas-dev liblapacke-dev libcurl4-openssl-dev"
TEST_DEPS="curl jq python3 ca-certificates sqlite3 iproute2"
# clang and its libFuzzer runtime: tests/fuzz/run-fuzzers.sh (skipped without them)
TEST_DEPS="$TEST_DEPS clang libclang-rt-14-dev"
# The dashboard's browser test: Debian's chromium driven by playwright-core from npm (node >= 18:
# Debian 12's nodejs and npm do). A node that came with its own npm is left as it is.
TEST_DEPS="$TEST_DEPS chromium"
# systemd-analyze, for tests/deploy/test_unit.sh (the package is installed, nothing is started)
TEST_DEPS="$TEST_DEPS systemd"
command -v npm >/dev/null 2>&1 || TEST_DEPS="$TEST_DEPS nodejs npm"

install_missing() {
  missing=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  echo "setup: installing$missing" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# configure once per set of flags; later runs only rebuild what changed
build() {
  dir=$1; shift
  [ -x configure ] && [ configure -nt configure.ac ] && [ configure -nt Makefile.am ] || autoreconf -fi >/dev/null
  mkdir -p "$dir"
  if [ ! -f "$dir/Makefile" ] || [ "$(cat "$dir/.flags" 2>/dev/null)" != "$*" ]; then
    (cd "$dir" && "$top/configure" -q "$@")
    echo "$*" > "$dir/.flags"
  fi
  make -C "$dir" -j"$(nproc)" -s
}

case "${1:-}" in
serve)
  install_missing $BUILD_DEPS
  build build/release
  shift
  exec build/release/compressd serve --listen 127.0.0.1:8420 --data-dir ./var "$@"
  ;;
test)
  install_missing $BUILD_DEPS $TEST_DEPS
  build build/test --enable-werror --enable-sanitizers
  exec sh tests/run-all.sh build/test
  ;;
*)
  echo "usage: tools/setup.sh serve|test" >&2
  exit 2
  ;;
esac
