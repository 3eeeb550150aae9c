#!/bin/sh
# Runs the whole suite in a configured build directory (make check, then make distcheck) and
# closes with the line "N passed, N failed" counted over every TAP test case.
# Usage: tests/run-all.sh BUILD_DIR
set -u
dir=${1:?usage: tests/run-all.sh BUILD_DIR}
make -C "$dir" -j"$(nproc)" -k check
check_rc=$?
# Each test's .trs lists its TAP results; count them (a crashed program counts as ERROR).
pass=0; fail=0
for trs in $(find "$dir/tests" -name '*.trs'); do
  p=$(grep -c '^:test-result: PASS' "$trs"); s=$(grep -c '^:test-result: SKIP' "$trs")
  f=$(grep -cE '^:test-result: (FAIL|XPASS|ERROR)' "$trs")
  pass=$((pass + p + s)); fail=$((fail + f))
done
[ "$check_rc" -ne 0 ] && [ "$fail" -eq 0 ] && fail=1
for log in $(find "$dir/tests" -name '*.log'); do
  if grep -qE '^(not ok|Bail out)' "$log"; then echo "--- $log"; grep -E '^(not ok|#)' "$log" | head -40; fi
done
# distcheck: the release tarball builds, installs with DESTDIR and passes its tests out of tree.
if [ "${CZ_SKIP_DISTCHECK:-0}" != 1 ]; then
  if make -C "$dir" -s distcheck >"$dir/distcheck.log" 2>&1; then
    echo "PASS: make distcheck"; pass=$((pass + 1))
  else
    echo "FAIL: make distcheck (tail of $dir/distcheck.log follows)"; tail -30 "$dir/distcheck.log"
    fail=$((fail + 1))
  fi
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
