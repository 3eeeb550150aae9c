#!/bin/sh
# stress-crash.sh: the kill -9 loop of tests/e2e/test_crash.sh for N cycles instead of CI's 50
# (hardening.md F5 asks for 1,000): random kills during uploads and jobs, a ledger of what the
# daemon acknowledged, checked after every restart. Prints the test's TAP; exit 1 on a failure.
#
# usage: bench/stress-crash.sh N [BUILDDIR]
#   N         kill -9 / restart cycles (1-2 s each on 2 cores with the sanitizer build)
#   BUILDDIR  the build tree holding compressd (default: build/test of this tree; a release
#             build is faster, the sanitizer build also checks memory errors)
# Needs curl, jq, python3 and sqlite3 (the orphan-blob checks are skipped without it).
set -u
[ $# -ge 1 ] || { echo "usage: $0 N [BUILDDIR]" >&2; exit 2; }
case $1 in '' | *[!0-9]*) echo "$0: N must be a number of cycles" >&2; exit 2 ;; esac
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${2:-$SRC/build/test}" && pwd) || exit 2
[ -x "$BUILD/compressd" ] || { echo "$0: no compressd in $BUILD" >&2; exit 2; }
out=$(mktemp)
CZ_SRCDIR=$SRC CZ_BUILDDIR=$BUILD CZ_CRASH_ITERS=$1 sh "$SRC/tests/e2e/test_crash.sh" 2>&1 |
  grep -v '^Killed$' | tee "$out"
if grep -q '^not ok' "$out"; then rc=1; else rc=0; fi
rm -f "$out"
exit $rc
