#!/bin/sh
# test_restart: durability of the job queue. kill -9 during a job, restart on the same data
# directory: the job runs again and its artifact is byte-identical to the CLI's; SIGTERM
# during a job: clean exit 0 and the job is handed back without counting an attempt; cancel
# of a running job within a second; one daemon per data directory.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

# A model large enough that a q8_0 job on one worker thread runs for a few seconds (about 3 s
# with the sanitizer build): 4 x [2048, 4096] F32 = 128 MiB.
BIG=$T_TMP/big.safetensors
st_write "$BIG" '{"metadata": {"format": "pt"}, "tensors": [
  {"name": "layers.0.mlp.weight", "dtype": "F32", "shape": [2048, 4096], "seed": 1},
  {"name": "layers.1.mlp.weight", "dtype": "F32", "shape": [2048, 4096], "seed": 2},
  {"name": "layers.2.mlp.weight", "dtype": "F32", "shape": [2048, 4096], "seed": 3},
  {"name": "layers.3.mlp.weight", "dtype": "F32", "shape": [2048, 4096], "seed": 4},
  {"name": "norm.weight", "dtype": "F32", "shape": [4096], "seed": 5}]}' || bail "st_write failed"
printf '%s\n' '{"steps": [{"op": "quantize", "type": "q8_0"}], "output": {"format": "gguf"}}' >"$T_TMP/recipe.json"

# The reference: the same recipe through the CLI, in the background while the daemon works.
t_cli=$(now_ms)
"$CZ_BIN" compress --recipe "$T_TMP/recipe.json" --threads 1 "$BIG" "$T_TMP/ref.gguf" \
  >"$T_TMP/cli.out" 2>&1 &
CLI_PID=$!
T_PIDS="$T_PIDS $CLI_PID"

D=$(mktemp -d "$T_TMP/data.XXXXXX")
# One worker thread: the job is slower, which leaves time to catch it running.
# jobs on the model "big" must still be running when the test kills the daemon: with the
# AVX2 kernels a release build quantizes it in a quarter of a second, so test builds sleep
# 100 ms before each of its tasks (daemon/cz_worker.c's slow hook: a job takes a few seconds)
slow_model big 100
start() { cz_start "$D" --workers 1 --log-level debug "$@"; }
start || bail "cannot start compressd"
A_PID=$CZ_PID

upload "$BIG" big
is "upload of the 128 MiB model: 201" "$R_STATUS" 201
MODEL=$MODEL_ID
JOBREQ='{"model": "'"$MODEL"'", "steps": [{"op": "quantize", "type": "q8_0"}], "output": {"format": "gguf"}}'

# ---- kill -9 during a job ----

submit "$JOBREQ"
is "job 1 submitted: 202" "$R_STATUS" 202
J1=$JOB_ID
if wait_running "$J1" 20; then
  ok "job 1 running with bytes_done $(jf "$JOB" .progress.bytes_done) of $(jf "$JOB" .progress.bytes_total)"
else
  not_ok "job 1 running with bytes_done > 0"
fi
is "job 1 attempts 1 while running" "$(jf "$JOB" .attempts)" 1
cz_stop "$A_PID" KILL
is "kill -9: the daemon dies of SIGKILL" "$CZ_EXIT" 137
diag "left in DATA_DIR/tmp by the killed daemon: $(find "$D/tmp" -type f | wc -l) file(s)"

start
check "restart on the same data directory" [ -n "$CZ_PORT" ]
wait_job "$J1" 30
is "job 1 completes after the restart" "$(jf "$JOB" .state)" succeeded
is "job 1 attempts == 2" "$(jf "$JOB" .attempts)" 2
is "job 1 progress complete" "$(jf "$JOB" '.progress | "\(.tensors_done)/\(.tensors_total) \(.bytes_done == .bytes_total)"')" "5/5 true"
req GET /v1/models
is "the model is still listed" "$(jf "$R_BODY" "[.models[].id] == [\"$MODEL\"]")" true
req GET /v1/jobs
is "the job is still listed" "$(jf "$R_BODY" "[.jobs[].id] == [\"$J1\"]")" true
req_to "$T_TMP/j1.gguf" GET "/v1/jobs/$J1/artifact"
is "job 1 artifact downloaded" "$R_STATUS" 200

wait "$CLI_PID"
cli_rc=$?
T_PIDS=$(printf '%s' "$T_PIDS" | sed "s/ $CLI_PID//")
is "CLI reference run succeeds ($(( $(now_ms) - t_cli )) ms)" "$cli_rc" 0
[ "$cli_rc" = 0 ] || diag "$(cat "$T_TMP/cli.out")"
REF_SHA=$(sha256_of "$T_TMP/ref.gguf")
is "artifact after kill -9 and restart is byte-identical to the CLI's" "$(sha256_of "$T_TMP/j1.gguf")" "$REF_SHA"
is "job 1 artifact.sha256 is the CLI output's" "$(jf "$JOB" .artifact.sha256)" "$REF_SHA"
check "nothing left in DATA_DIR/tmp" dir_empty "$D/tmp"
check "restart log reports requeued=1" grep -q 'msg=recovered requeued=1 ' "$CZ_LOG"

# ---- one daemon per data directory ----

t0=$(now_ms)
timeout 10 "$CZ_BIN" serve --listen 127.0.0.1:0 --data-dir "$D" >"$T_TMP/second.out" 2>"$T_TMP/second.err"
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'another compressd' "$T_TMP/second.err"; then
  ok "a second daemon on the same data dir refuses to start (exit $rc, $(( $(now_ms) - t0 )) ms)"
else
  not_ok "a second daemon on the same data dir refuses to start (exit $rc)"
fi
diag "$(grep -v '^ts=' "$T_TMP/second.err" | head -3)"
req GET /readyz
is "the first daemon is still ready" "$R_STATUS" 200

# ---- SIGTERM during a job ----

submit "$JOBREQ"
J2=$JOB_ID
if wait_running "$J2" 20; then ok "job 2 running"; else not_ok "job 2 running"; fi
cz_stop "$CZ_PID" TERM 10
st=$?
is "SIGTERM during a job: exit 0" "$CZ_EXIT" 0
if [ $st -eq 0 ] && [ "$CZ_STOP_MS" -le 5000 ]; then
  ok "SIGTERM: the daemon exits within 5 s ($CZ_STOP_MS ms)"
else
  not_ok "SIGTERM: the daemon exits within 5 s ($CZ_STOP_MS ms)"
fi
check "SIGTERM: the log says the job was released" grep -q "job released.*$J2" "$CZ_LOG"
check "SIGTERM: nothing left in DATA_DIR/tmp" dir_empty "$D/tmp"
start
check "restart after SIGTERM" [ -n "$CZ_PORT" ]
wait_job "$J2" 30
is "job 2 completes after the restart" "$(jf "$JOB" .state)" succeeded
is "job 2 attempts == 1 (the released run does not count)" "$(jf "$JOB" .attempts)" 1
is "job 2 artifact equals the CLI's" "$(jf "$JOB" .artifact.sha256)" "$REF_SHA"

# ---- cancel of a running job ----

submit "$JOBREQ"
J3=$JOB_ID
if wait_running "$J3" 20; then ok "job 3 running"; else not_ok "job 3 running"; fi
t0=$(now_ms)
req POST "/v1/jobs/$J3:cancel"
is "cancel of a running job: 202, cancel_requested" "$R_STATUS $(jf "$R_BODY" .cancel_requested)" "202 true"
state=
i=0
while [ $i -lt 50 ]; do
  state=$(jf "$(job_json "$J3")" .state)
  [ "$state" = canceled ] && break
  sleep 0.1
  i=$((i + 1))
done
elapsed=$(( $(now_ms) - t0 ))
if [ "$state" = canceled ] && [ $elapsed -le 1000 ]; then
  ok "running job reaches canceled within 1 s ($elapsed ms)"
else
  not_ok "running job reaches canceled within 1 s (state $state after $elapsed ms)"
fi
JOB=$(job_json "$J3")
is "canceled job: error.code canceled, no artifact" "$(jf "$JOB" '"\(.error.code) \(.artifact)"')" "canceled null"
req GET "/v1/jobs/$J3/artifact"
expect_error "artifact of a canceled job" 409 conflict
check "cancel leaves no temporary file" dir_empty "$D/tmp"
req GET "/v1/jobs?state=succeeded"
is "two succeeded jobs listed, newest first" "$(jf "$R_BODY" '[.jobs[].id] | join(" ")')" "$J2 $J1"

# ---- kill -9 of a job that has used its last attempt ----

req GET "/v1/jobs?page_size=1"
PAGE2=$(jf "$R_BODY" '.next_page_token // empty')
req GET "/v1/jobs?page_size=1&page_token=$PAGE2"
PAGE2_IDS=$(jf "$R_BODY" '[.jobs[].id] | join(" ")')
check "page 2 of the jobs before the restart holds a job" [ -n "$PAGE2_IDS" ]
cz_stop "$CZ_PID"
is "SIGTERM with no job running: exit 0" "$CZ_EXIT" 0
start --max-attempts 1
# the page-token key is kept in the data directory: a client paging carries on after a restart
req GET "/v1/jobs?page_size=1&page_token=$PAGE2"
is "a page token from before the restart gives the next page" \
  "$R_STATUS $(jf "$R_BODY" '[.jobs[].id] | join(" ")')" "200 $PAGE2_IDS"
submit "$JOBREQ"
J4=$JOB_ID
is "job 4 (max_attempts 1) submitted" "$R_STATUS $(jf "$R_BODY" .max_attempts)" "202 1"
if wait_running "$J4" 20; then ok "job 4 running"; else not_ok "job 4 running"; fi
cz_stop "$CZ_PID" KILL
start
JOB=$(job_json "$J4")
is "after kill -9 a job out of attempts is failed, not run again" \
  "$(jf "$JOB" '"\(.state) \(.attempts) \(.error.code) \(.artifact)"')" "failed 1 worker_crash null"
diag "error: $(jf "$JOB" .error.message)"
check "restart log reports failed=1" grep -q 'msg=recovered .*failed=1 ' "$CZ_LOG"
check "nothing left in DATA_DIR/tmp after the restart" dir_empty "$D/tmp"

cz_stop "$CZ_PID"
is "final SIGTERM: exit 0" "$CZ_EXIT" 0
check "final: nothing left in DATA_DIR/tmp" dir_empty "$D/tmp"
if grep -q 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$T_TMP"/daemon*.log; then
  not_ok "no sanitizer reports in the daemon logs"
  diag "$(grep -h -A5 'ERROR: \|runtime error:' "$T_TMP"/daemon*.log | head -30)"
else
  ok "no sanitizer reports in the daemon logs"
fi
t_done
