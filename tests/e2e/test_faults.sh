#!/bin/sh
# test_faults: a model that crashes the worker is retried up to max_attempts, then the job fails
# with worker_crash (hardening.md F7/P8); a full disk (a small tmpfs as the data directory)
# gives 507 no_space for an upload and for a job's artifact, leaves no temporary file, keeps
# the daemon up, and everything works again once space returns (F1/P12).
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

MNT=
f_cleanup() {
  for p in $T_PIDS; do
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  T_PIDS=
  [ -n "$MNT" ] && umount "$MNT" 2>/dev/null
  t_cleanup
}
trap 'f_cleanup' EXIT
trap 'f_cleanup; exit 1' INT TERM HUP

# wait_exit PID TIMEOUT_S: wait for a daemon to exit on its own; CZ_EXIT gets its status.
# Returns 1 (and kills it) if it is still running after TIMEOUT_S.
wait_exit() {
  _i=0
  while kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; do
    if [ $_i -ge $(($2 * 10)) ]; then
      cz_stop "$1" KILL
      return 1
    fi
    sleep 0.1
    _i=$((_i + 1))
  done
  cz_stop "$1" KILL
  return 0
}

Q8='"steps": [{"op": "quantize", "type": "q8_0"}], "output": {"format": "gguf"}'
# A 4 MiB F32 model: a q8_0 artifact of about 1.1 MiB.
model() {
  st_write "$1" '{"tensors": [
    {"name": "layers.0.mlp.weight", "dtype": "F32", "shape": [512, 1024], "seed": '"$2"'},
    {"name": "layers.1.mlp.weight", "dtype": "F32", "shape": [512, 1024], "seed": '"$(($2 + 1))"'}]}' ||
    bail "st_write failed"
}
model "$T_TMP/poison.safetensors" 1
model "$T_TMP/good.safetensors" 3

# ---- a model that crashes the worker (test hook) ----

D=$(mktemp -d "$T_TMP/data.XXXXXX")
MAXA=3
export CZ_TEST_CRASH_MODEL=poison
cz_start "$D" --workers 1 --max-attempts $MAXA || bail "cannot start compressd"
if ! grep -q 'test hook armed' "$CZ_LOG"; then
  unset CZ_TEST_CRASH_MODEL
  cz_stop
  skip "worker crash hook" "compressd built without --enable-test-hooks"
  HOOKS=no
else
  HOOKS=yes
fi
if [ $HOOKS = yes ]; then
  upload "$T_TMP/poison.safetensors" poison
  is "upload of the poison model: 201" "$R_STATUS" 201
  POISON=$MODEL_ID
  upload "$T_TMP/good.safetensors" good
  is "upload of a good model: 201" "$R_STATUS" 201
  GOOD=$MODEL_ID
  submit '{"model": "'"$POISON"'", '"$Q8"'}'
  is "job on the poison model: 202" "$R_STATUS" 202
  PJ=$JOB_ID
  crashes=0
  if wait_exit "$CZ_PID" 30 && [ "$CZ_EXIT" = 134 ]; then crashes=1; fi
  is "the worker crash takes the daemon down (SIGABRT)" "$CZ_EXIT" 134
  # Every restart claims the job again and dies again, until its attempts are used up. The
  # daemon may die before it prints its address, so it is started by hand here.
  n=1
  while [ $n -lt $MAXA ]; do
    n=$((n + 1))
    CZ_N=$((CZ_N + 1))
    "$CZ_BIN" serve --listen 127.0.0.1:0 --data-dir "$D" --workers 1 --max-attempts $MAXA \
      >"$T_TMP/daemon$CZ_N.out" 2>"$T_TMP/daemon$CZ_N.log" &
    CZ_PID=$!
    T_PIDS="$T_PIDS $CZ_PID"
    if wait_exit "$CZ_PID" 30 && [ "$CZ_EXIT" = 134 ]; then crashes=$((crashes + 1)); fi
  done
  is "restarted daemons crash on the same job ($MAXA times in all)" "$crashes" "$MAXA"
  cz_start "$D" --workers 1 --max-attempts $MAXA
  check "after $MAXA crashes the daemon starts and stays up" [ -n "$CZ_PORT" ]
  check "recovery reports the job failed" grep -q 'msg=recovered .*failed=1 ' "$CZ_LOG"
  JOB=$(job_json "$PJ")
  is "the poison job: failed, worker_crash, attempts $MAXA, no artifact" \
    "$(jf "$JOB" '"\(.state) \(.error.code) \(.attempts) \(.artifact)"')" "failed worker_crash $MAXA null"
  diag "error: $(jf "$JOB" .error.message)"
  req GET "/v1/jobs/$PJ/artifact"
  expect_error "no artifact for the crashed job" 409 conflict
  submit '{"model": "'"$GOOD"'", '"$Q8"'}'
  wait_job "$JOB_ID" 30
  is "a job on another model runs with the hook armed" "$(jf "$JOB" .state)" succeeded
  sleep 0.3
  req GET /livez
  is "the daemon is still up" "$R_STATUS" 200
  check "no temporary file left by the crashes" dir_empty "$D/tmp"
  unset CZ_TEST_CRASH_MODEL
  cz_stop
  is "SIGTERM: exit 0" "$CZ_EXIT" 0
  # without the variable the same build runs the poison model like any other
  cz_start "$D" --workers 1 || bail "cannot restart compressd"
  check "without CZ_TEST_CRASH_MODEL the hook is not armed" sh -c "! grep -q 'test hook armed' '$CZ_LOG'"
  req POST "/v1/jobs/$PJ:retry"
  is "retry of the crashed job: 202" "$R_STATUS" 202
  wait_job "$(jf "$R_BODY" .id)" 30
  is "the retried job succeeds once the hook is off" "$(jf "$JOB" .state)" succeeded
  cz_stop
fi

# ---- disk full ----

if [ "$(id -u)" != 0 ]; then
  skip "disk full on a small tmpfs" "needs root to mount a tmpfs"
  t_done
  exit 0
fi
MNT=$(mktemp -d "$T_TMP/mnt.XXXXXX")
if ! mount -t tmpfs -o size=6m,mode=0700 tmpfs "$MNT" 2>"$T_TMP/mount.err"; then
  MNT=
  skip "disk full on a small tmpfs" "mount not permitted: $(cat "$T_TMP/mount.err")"
  t_done
  exit 0
fi
D=$MNT/data
cz_start "$D" --workers 1 || bail "cannot start compressd on the tmpfs"
# 1 MiB models with different contents (no dedup) until the 6 MiB file system is full
i=0
got507=no
n201=0
while [ $i -lt 12 ]; do
  i=$((i + 1))
  st_write "$T_TMP/m.safetensors" '{"tensors": [{"name": "w", "dtype": "F32", "shape": [256, 1024], "seed": '"$((100 + i))"'}]}'
  upload "$T_TMP/m.safetensors" "fill$i"
  if [ "$R_STATUS" = 201 ]; then
    n201=$((n201 + 1))
    LAST_MODEL=$MODEL_ID
  else
    got507=$R_STATUS
    break
  fi
done
diag "$n201 uploads of 1 MiB stored before the file system was full ($(df -k --output=avail "$MNT" | tail -1 | tr -d ' ') KiB left)"
check "some uploads fit first" [ "$n201" -ge 2 ]
expect_error "the upload that does not fit: 507 no_space" 507 no_space
diag "message: $(jf "$R_BODY" .error.message)"
case $(jf "$R_BODY" .error.message) in
  *"$MNT"*) not_ok "the 507 message does not reveal the data directory's path" ;;
  *) ok "the 507 message does not reveal the data directory's path" ;;
esac
req GET /livez
is "the daemon stays up (livez)" "$R_STATUS" 200
req GET /readyz
is "the daemon stays ready (readyz)" "$R_STATUS" 200
check "no temporary file left by the refused upload" dir_empty "$D/tmp"
req GET /v1/models?page_size=100
is "no row for the refused upload" "$(jf "$R_BODY" '.models | length')" "$n201"
req DELETE "/v1/models/$LAST_MODEL"
is "delete a model to free space: 204" "$R_STATUS" 204
upload "$T_TMP/m.safetensors" again
is "the same upload fits once space was freed: 201" "$R_STATUS" 201
is "its sha256 is the file's" "$(jf "$R_BODY" .sha256)" "$(sha256_of "$T_TMP/m.safetensors")"

mount -o remount,size=48m "$MNT"
model "$T_TMP/big.safetensors" 7
upload "$T_TMP/big.safetensors" big
is "after growing the file system a 4 MiB upload fits: 201" "$R_STATUS" 201
BIGM=$MODEL_ID

# A job whose artifact does not fit: fill the file system but for 256 KiB (the q8_0 artifact
# is about 1.1 MiB; the database's few writes still fit).
avail=$(df -B1 --output=avail "$MNT" | tail -1 | tr -d ' ')
dd if=/dev/zero of="$MNT/filler" bs=65536 count=$(((avail - 262144) / 65536)) 2>/dev/null
diag "filler written; $(df -k --output=avail "$MNT" | tail -1 | tr -d ' ') KiB left"
blobs_before=$(find "$D/blobs" -type f | wc -l)
submit '{"model": "'"$BIGM"'", '"$Q8"'}'
is "job submitted on a nearly full disk: 202" "$R_STATUS" 202
FJ=$JOB_ID
wait_job "$FJ" 30
is "the job whose artifact hits ENOSPC fails with no_space" \
  "$(jf "$JOB" '"\(.state) \(.error.code) \(.artifact)"')" "failed no_space null"
diag "error: $(jf "$JOB" .error.message)"
check "the failed job left no temporary file" dir_empty "$D/tmp"
is "the failed job published no blob" "$(find "$D/blobs" -type f | wc -l)" "$blobs_before"
req GET "/v1/jobs/$FJ/artifact"
expect_error "no artifact served for the failed job" 409 conflict
req GET /livez
is "the daemon stays up after the failed job" "$R_STATUS" 200
rm -f "$MNT/filler"
req POST "/v1/jobs/$FJ:retry"
is "retry once space is back: 202" "$R_STATUS" 202
wait_job "$(jf "$R_BODY" .id)" 30
is "the retried job succeeds" "$(jf "$JOB" .state)" succeeded
req_to "$T_TMP/a.gguf" GET "/v1/jobs/$(jf "$JOB" .id)/artifact"
is "its artifact is served whole (sha256)" "$(sha256_of "$T_TMP/a.gguf")" "$(jf "$JOB" .artifact.sha256)"

cz_stop
is "SIGTERM: exit 0" "$CZ_EXIT" 0
if grep -q 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$T_TMP"/daemon*.log; then
  not_ok "no sanitizer reports in the daemon logs"
  diag "$(grep -h -A5 'ERROR: \|runtime error:' "$T_TMP"/daemon*.log | head -30)"
else
  ok "no sanitizer reports in the daemon logs"
fi
t_done
