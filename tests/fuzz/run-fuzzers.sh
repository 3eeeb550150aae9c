#!/bin/sh
# run-fuzzers: builds the libFuzzer harnesses (fuzz_safetensors, fuzz_gguf, fuzz_st_header) with
# clang under ASan and UBSan in a build directory of their own, and runs each for a bounded
# time from its seed corpus (tests/fuzz/corpus/HARNESS), two at a time (CI machines have two
# cores). TAP: one line for the build, one per harness; a harness that finds a crash, a leak,
# UB, an over-large allocation or a hang fails, and the input it saved is printed with the
# command that adds it to tests/fuzz/regressions/HARNESS/ (test_fuzz_replay then replays it in
# every build).
#
# Environment:
#   FUZZ_SECONDS   time per harness (default: 60 when CI=true, else 10; 5 when the source
#                  tree is read-only, as under make distcheck, which only needs to see that
#                  the fuzzers build and run from the release tarball)
#   FUZZ_DIR       build and work directory (default: $CZ_BUILDDIR/fuzz-work)
#   CC_FUZZ        the clang to use (default: clang)
#   CZ_SRCDIR, CZ_BUILDDIR as for every test (set by make check); run by hand from the top of
#   the source tree they default to . and ./build/test.
# Without clang (or without its libFuzzer runtime) the whole script is skipped.
set -u
CZ_SRCDIR=${CZ_SRCDIR:-.}
CZ_SRCDIR=$(cd "$CZ_SRCDIR" && pwd)
CZ_BUILDDIR=${CZ_BUILDDIR:-$CZ_SRCDIR/build/test}
mkdir -p "$CZ_BUILDDIR"
CZ_BUILDDIR=$(cd "$CZ_BUILDDIR" && pwd)
CC_FUZZ=${CC_FUZZ:-clang}
# the mode bits, not `test -w`, which is always true for root
if [ -z "$(find "$CZ_SRCDIR" -maxdepth 0 -perm -u=w 2>/dev/null)" ]; then FUZZ_SECONDS=${FUZZ_SECONDS:-5}
elif [ "${CI:-}" = true ]; then FUZZ_SECONDS=${FUZZ_SECONDS:-60}
else FUZZ_SECONDS=${FUZZ_SECONDS:-10}; fi
FUZZ_DIR=${FUZZ_DIR:-$CZ_BUILDDIR/fuzz-work}
HARNESSES="fuzz_safetensors fuzz_gguf fuzz_st_header"

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
diag() { printf '%s\n' "$*" | sed 's/^/# /'; }

if ! command -v "$CC_FUZZ" >/dev/null 2>&1; then
  echo "1..0 # SKIP $CC_FUZZ not found (apt-get install clang libclang-rt-14-dev)"
  exit 0
fi
probe=$(mktemp -d "${TMPDIR:-/tmp}/cz-fuzzprobe.XXXXXX")
printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
  'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
  'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
  >"$probe/p.c"
if ! "$CC_FUZZ" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >"$probe/log" 2>&1; then
  rm -rf "$probe"
  echo "1..0 # SKIP $CC_FUZZ cannot link -fsanitize=fuzzer (apt-get install libclang-rt-14-dev)"
  exit 0
fi
rm -rf "$probe"

echo "1..4"
diag "FUZZ_SECONDS=$FUZZ_SECONDS per harness, in $FUZZ_DIR"

# ---- build ----
B=$FUZZ_DIR/build
mkdir -p "$B"
build_log=$FUZZ_DIR/build.log
if (
  cd "$B" || exit 1
  if [ ! -f Makefile ] || [ "$CZ_SRCDIR/configure" -nt Makefile ]; then
    CC=$CC_FUZZ "$CZ_SRCDIR/configure" -q --enable-fuzzers || exit 1
  fi
  make -j2 fuzzers
) >"$build_log" 2>&1; then
  ok "build the fuzzers with $CC_FUZZ (-fsanitize=fuzzer,address,undefined)"
else
  not_ok "build the fuzzers with $CC_FUZZ"
  diag "$(tail -30 "$build_log")"
  for h in $HARNESSES; do not_ok "$h: not built"; done
  exit 1
fi

# ---- run ----
# run_one HARNESS: fuzz from a private copy of the seed corpus for FUZZ_SECONDS; findings go
# to $FUZZ_DIR/findings/HARNESS/. Writes $FUZZ_DIR/HARNESS.log.
run_one() {
  h=$1
  work=$FUZZ_DIR/corpus/$h
  found=$FUZZ_DIR/findings/$h
  rm -rf "$work" "$found"
  mkdir -p "$work" "$found"
  case $h in fuzz_gguf) dict=gguf.dict ;; *) dict=safetensors.dict ;; esac
  # -rss_limit_mb/-malloc_limit_mb: an allocation sized by what a file claims is a finding
  # (hardening.md 7); the inputs are small, so the parser never needs more than a few MiB.
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$B/tests/fuzz/$h" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=512 -print_final_stats=1 -dict="$CZ_SRCDIR/tests/fuzz/$dict" \
    -artifact_prefix="$found/" "$work" "$CZ_SRCDIR/tests/fuzz/corpus/$h" \
    >"$FUZZ_DIR/$h.log" 2>&1
  echo $? >"$FUZZ_DIR/$h.rc"
}

report() {
  h=$1
  rc=$(cat "$FUZZ_DIR/$h.rc" 2>/dev/null || echo 99)
  execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$FUZZ_DIR/$h.log" | tail -1)
  cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE).*cov:' "$FUZZ_DIR/$h.log" | tail -1 |
    sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  finds=$(ls -A "$FUZZ_DIR/findings/$h" 2>/dev/null)
  if [ "$rc" = 0 ] && [ -z "$finds" ]; then
    ok "$h: ${execs:-?} executions in ${FUZZ_SECONDS} s, coverage ${cov:-?}, no finding"
  else
    not_ok "$h: exit $rc after ${execs:-?} executions"
    diag "$(grep -E -A25 '==ERROR|runtime error|cz_fuzz:|Deadly|out-of-memory|timeout' "$FUZZ_DIR/$h.log" | head -60)"
    for f in $finds; do
      diag "finding: $FUZZ_DIR/findings/$h/$f" \
        "keep it: cp $FUZZ_DIR/findings/$h/$f tests/fuzz/regressions/$h/ (then fix the reader)"
    done
  fi
}

run_one fuzz_safetensors &
p1=$!
run_one fuzz_gguf &
p2=$!
wait $p1
report fuzz_safetensors
run_one fuzz_st_header &
p3=$!
wait $p2
report fuzz_gguf
wait $p3
report fuzz_st_header
[ "$failed" -eq 0 ]
