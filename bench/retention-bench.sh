#!/bin/sh
# retention-bench: the cost of the retention sweep (daemon/cz_retention.c) on a store of N
# models and N finished jobs with 1 KiB blobs each, on the disk of RETENTION_BENCH_DIR
# (default /tmp/compressd-retention-bench, removed after).
# usage: bench/retention-bench.sh [N] [BUILD_DIR]   (default 1000, build/release)
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
N=${1:-1000}
BUILD=${2:-build/release}
if [ ! -f "$BUILD/libczdaemon.a" ]; then
  [ -x configure ] || autoreconf -fi >/dev/null
  mkdir -p "$BUILD"
  [ -f "$BUILD/Makefile" ] || (cd "$BUILD" && "$top/configure" -q)
  make -C "$BUILD" -j2 -s libczdaemon.a libczcore.a
fi
DIR=${RETENTION_BENCH_DIR:-/tmp/compressd-retention-bench}
rm -rf "$DIR"
mkdir -p "$DIR"
SAN=
grep -q -- '-fsanitize=address' "$BUILD/Makefile" && SAN="-fsanitize=address,undefined"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 $SAN -I"$top/core" -I"$top/daemon" -I"$top/api" bench/retention-bench.c \
  "$BUILD/libczdaemon.a" "$BUILD/libczcore.a" \
  $(pkg-config --cflags --libs jansson sqlite3 libcurl libmicrohttpd libuv lapacke openblas) \
  -lpthread -lm -o "$DIR/retention-bench"
"$DIR/retention-bench" "$N" "$DIR" 2>/dev/null
rm -rf "$DIR"
