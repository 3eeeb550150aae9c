#!/bin/sh
# test_joblog: GET /v1/jobs/{id}/log, the per-job event log. A real job's lines come in order
# (queued, claimed, planned, one per tensor, succeeded) with dense seq numbers; the since
# cursor and limit page through them; ?format=text is a download of the same lines; an
# unknown job is 404 and bad arguments 400; cancel and retry are logged on both jobs; a job
# the daemon dies on (test hook) shows each attempt, the requeue and the worker_crash failure,
# which GET /v1/status then counts among the recent failures.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

DATA=$(mktemp -d "$T_TMP/data.XXXXXX")
slow_model slowtiny 100
cz_start "$DATA" --workers 1 || bail "cannot start compressd"

upload "$CZ_DATA/tiny-llama-f16.gguf" tiny
is "upload the test model" "$R_STATUS" 201
N_TENSORS=$(jf "$R_BODY" .tensor_count)
submit "{\"model\": \"$MODEL_ID\", \"steps\": [{\"op\": \"quantize\", \"type\": \"q8_0\"}], \"output\": {\"format\": \"gguf\"}}"
is "submit a q8_0 job" "$R_STATUS" 202
J=$JOB_ID
is "the job links to its log" "$(jf "$R_BODY" .links.log)" "/v1/jobs/$J/log"
wait_job "$J" 60 || bail "the job did not finish"
is "the job succeeded" "$(jf "$JOB" .state)" succeeded

# ---- the whole log ----
req GET "/v1/jobs/$J/log"
is "GET log: 200 JSON" "$R_STATUS $(header Content-Type)" "200 application/json"
LOG=$R_BODY
events=$(jf "$LOG" '[.lines[].event] | join(" ")')
want="queued claimed planned$(i=0; while [ $i -lt "$N_TENSORS" ]; do printf ' tensor'; i=$((i + 1)); done) succeeded"
# progress lines may come between planned and the tensors on a slow machine
is "the lines come in order: queued, claimed, planned, one per tensor ($N_TENSORS), succeeded" \
  "$(printf '%s' "$events" | sed 's/ progress//g')" "$want"
n=$(jf "$LOG" '.lines | length')
is "seq runs 1..$n without gaps" "$(jf "$LOG" '[.lines[].seq] == [range(1; (.lines | length) + 1)]')" true
is "first_seq, last_seq and next_since bound the lines" \
  "$(jf "$LOG" '[.first_seq, .last_seq, .next_since, .more, .truncated, .done] | map(tostring) | join(" ")')" \
  "1 $n $n false false true"
is "the claim names the worker and the attempt" \
  "$(jf "$LOG" '.lines[1].message | test("^claimed by .+, attempt 1 of [0-9]+$")')" true
sha=$(jf "$JOB" .artifact.sha256)
is "the last line names the artifact's sha256" "$(jf "$LOG" ".lines[-1].message | contains(\"$sha\")")" true
first_tensor=$(jf "$LOG" '[.lines[] | select(.event == "tensor")][0].message')
check "a tensor line has the type, bits per weight and error ($first_tensor)" \
  sh -c "printf '%s' '$first_tensor' | grep -Eq '^[^:]+: [A-Za-z0-9_]+ -> [a-z0-9_A-Z]+, [0-9.]+ bits/weight, relative error [-0-9.e]+$'"
is "every line has a time, a level and a message" \
  "$(jf "$LOG" '[.lines[] | (.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T.*Z$")) and (.level | IN("info", "warn", "error")) and (.message | length > 0)] | all')" true

# ---- the since cursor ----
k=$((n - 3))
req GET "/v1/jobs/$J/log?since=$k"
is "since=$k: the lines after it, exactly" "$(jf "$R_BODY" '[.lines[].seq] | map(tostring) | join(" ")')" \
  "$((k + 1)) $((k + 2)) $((k + 3))"
is "... and they are the same lines" "$(jf "$R_BODY" '.lines')" "$(jf "$LOG" ".lines[$k:]")"
req GET "/v1/jobs/$J/log?since=$n"
is "since=last_seq: no lines, next_since stays, done" "$(jf "$R_BODY" '[(.lines | length), .next_since, .done] | map(tostring) | join(" ")')" "0 $n true"
req GET "/v1/jobs/$J/log?since=0&limit=2"
is "limit=2: two lines, more, not done" "$(jf "$R_BODY" '[(.lines | length), .next_since, .more, .done] | map(tostring) | join(" ")')" "2 2 true false"
# follow the way the dashboard does: since = next_since until done
s=0 got= i=0
while [ $i -lt 100 ]; do
  req GET "/v1/jobs/$J/log?since=$s&limit=7"
  got="$got $(jf "$R_BODY" '[.lines[].seq] | map(tostring) | join(" ")')"
  s=$(jf "$R_BODY" .next_since)
  [ "$(jf "$R_BODY" .done)" = true ] && break
  i=$((i + 1))
done
is "following with since and limit=7 reads every line once" "$(echo $got)" "$(jf "$LOG" '[.lines[].seq] | map(tostring) | join(" ")')"

# ---- errors ----
req GET /v1/jobs/job_000000000000000000000000/log
expect_error "an unknown job is 404" 404 not_found
req GET "/v1/jobs/$J/log?since=abc"
expect_error "since=abc is 400" 400 invalid_argument
req GET "/v1/jobs/$J/log?since=-1"
expect_error "since=-1 is 400" 400 invalid_argument
req GET "/v1/jobs/$J/log?limit=0"
expect_error "limit=0 is 400" 400 invalid_argument
req GET "/v1/jobs/$J/log?limit=1001"
expect_error "limit above the cap (1000) is 400" 400 invalid_argument
req GET "/v1/jobs/$J/log?format=xml"
expect_error "format=xml is 400" 400 invalid_argument

# ---- text download ----
req GET "/v1/jobs/$J/log?format=text"
is "format=text: 200 text/plain" "$R_STATUS $(header Content-Type)" "200 text/plain; charset=utf-8"
is "... offered as a file named after the job" "$(header Content-Disposition)" "attachment; filename=\"$J.log\""
is "... one line per event" "$(printf '%s\n' "$R_BODY" | wc -l)" "$n"
is "... TIME LEVEL EVENT: MESSAGE, the same events in the same order" \
  "$(printf '%s\n' "$R_BODY" | awk '{sub(":$", "", $3); printf "%s ", $3}' | sed 's/ $//')" "$events"
is "... the last line is the JSON's last message" "$(printf '%s\n' "$R_BODY" | tail -1 | sed 's/^[^ ]* [a-z]* *[a-z_]*: //')" \
  "$(jf "$LOG" '.lines[-1].message')"

# ---- cancel and retry are logged ----
# with one worker the last of ten jobs waits behind the others: jobs on the copy named
# "slowtiny" sleep 100 ms before each task in test builds (CZ_TEST_SLOW_MODEL, set at the top)
upload "$CZ_DATA/tiny-llama-f16.gguf" slowtiny
for i in 1 2 3 4 5 6 7 8 9 10; do
  submit "{\"model\": \"$MODEL_ID\", \"steps\": [{\"op\": \"quantize\", \"type\": \"q4_0\"}], \"output\": {\"format\": \"gguf\"}}"
done
C=$JOB_ID
req POST "/v1/jobs/$C:cancel"
case $R_STATUS in
  200)
    wait_job "$C" 30
    req GET "/v1/jobs/$C/log"
    is "a job canceled while queued: queued, then canceled before it started" \
      "$(jf "$R_BODY" '[.lines[] | .event + "|" + .message] | join(";")')" \
      "queued|queued on model $MODEL_ID;canceled|canceled: canceled by request (before it started)"
    ;;
  202)
    wait_job "$C" 30
    req GET "/v1/jobs/$C/log"
    check "a cancel while running is logged as cancel_requested" test "$(jf "$R_BODY" '[.lines[].event] | index("cancel_requested") != null')" = true
    ;;
  *) skip "cancel is logged" "the job finished before the cancel ($R_STATUS)" ;;
esac
if [ "$(jf "$(job_json "$C")" .state)" = canceled ]; then
  req POST "/v1/jobs/$C:retry"
  R=$(jf "$R_BODY" .id)
  req GET "/v1/jobs/$R/log"
  is "the retry's first line names the job it repeats" "$(jf "$R_BODY" '.lines[0].message')" "queued on model $MODEL_ID as a retry of $C"
  req GET "/v1/jobs/$C/log"
  is "the original's last line names the retry" "$(jf "$R_BODY" '.lines[-1] | .event + ": " + .message')" "retried: retried as $R"
  wait_job "$R" 60
  # a deleted job (retention) takes its log with it
  req DELETE "/v1/jobs/$C"
  if [ "$R_STATUS" = 404 ] || [ "$R_STATUS" = 405 ]; then
    skip "a deleted job's log goes" "this build has no DELETE /v1/jobs/{id}"
  else
    is "DELETE the canceled job" "$R_STATUS" 204
    req GET "/v1/jobs/$C/log"
    expect_error "its log is gone with it" 404 not_found
  fi
else
  skip "retry is logged" "the job was not canceled"
fi

# ---- GET /v1/status before any failure ----
req GET /v1/status
is "GET /v1/status: 200 JSON" "$R_STATUS $(header Content-Type)" "200 application/json"
is "... jobs by state agree with the job list" "$(jf "$R_BODY" '.jobs.succeeded + .jobs.canceled + .jobs.queued + .jobs.running')" \
  "$(curl -s "$CZ_URL/v1/jobs?page_size=100" | jq '.jobs | length')"
is "... no failures yet; workers and disk are reported" \
  "$(jf "$R_BODY" '[(.recent_failures.by_code | length), (.workers.slots > 0), (.disk.free_bytes > 0), (.disk.total_bytes >= .disk.free_bytes), (.version | length > 0)] | map(tostring) | join(" ")')" \
  "0 true true true true"

# ---- the log survives a restart ----
cz_stop
is "the daemon stops cleanly" "$CZ_EXIT" 0
cz_start "$DATA" --workers 1 || bail "cannot restart compressd"
req GET "/v1/jobs/$J/log"
is "after a restart the log is the same" "$(jf "$R_BODY" .lines)" "$(jf "$LOG" .lines)"
cz_stop
is "the daemon stops cleanly again" "$CZ_EXIT" 0

# ---- a job the daemon dies on (test hook): every attempt and the end are logged ----
wait_dead() {
  _i=0
  while kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; do
    [ $_i -ge 300 ] && break
    sleep 0.1
    _i=$((_i + 1))
  done
  cz_stop "$1" KILL
}
export CZ_TEST_CRASH_MODEL=poison
cz_start "$DATA" --workers 1 --max-attempts 2 || bail "cannot restart compressd"
if ! grep -q 'test hook armed' "$CZ_LOG"; then
  unset CZ_TEST_CRASH_MODEL
  skip "a crashing job's log" "compressd built without --enable-test-hooks"
  cz_stop
else
  upload "$CZ_DATA/tiny-llama-f16.gguf" poison
  submit "{\"model\": \"$MODEL_ID\", \"steps\": [{\"op\": \"quantize\", \"type\": \"q8_0\"}], \"output\": {\"format\": \"gguf\"}}"
  PJ=$JOB_ID
  wait_dead "$CZ_PID"
  is "the hook takes the daemon down (SIGABRT)" "$CZ_EXIT" 134
  # the second attempt dies too, maybe before the address is printed: started by hand
  CZ_N=$((CZ_N + 1))
  "$CZ_BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA" --workers 1 --max-attempts 2 \
    >"$T_TMP/daemon$CZ_N.out" 2>"$T_TMP/daemon$CZ_N.log" &
  CZ_PID=$!
  T_PIDS="$T_PIDS $CZ_PID"
  wait_dead "$CZ_PID"
  is "... and again on the second attempt" "$CZ_EXIT" 134
  unset CZ_TEST_CRASH_MODEL
  cz_start "$DATA" --workers 1 --max-attempts 2 || bail "cannot restart compressd"
  req GET "/v1/jobs/$PJ/log"
  is "the log: queued, attempt 1, requeued after the crash, attempt 2, failed with worker_crash" \
    "$(jf "$R_BODY" '[.lines[] | select(.event != "progress" and .event != "planned") | .event] | join(" ")')" \
    "queued claimed requeued claimed failed"
  is "... the requeue names the attempt" "$(jf "$R_BODY" '[.lines[] | select(.event == "requeued")][0] | .level + " " + .message')" \
    "warn back in the queue: the daemon stopped during attempt 1 of 2"
  is "... the end is an error line with the code" "$(jf "$R_BODY" '.lines[-1] | .level + " " + (.message | split(":")[0:2] | join(":"))')" \
    "error failed: worker_crash"
  is "... and the log is done" "$(jf "$R_BODY" .done)" true
  req GET /v1/status
  is "GET /v1/status groups the failure by reason" \
    "$(jf "$R_BODY" '.recent_failures.by_code | map("\(.code) \(.count) \(.last_job)") | join(",")')" "worker_crash 1 $PJ"
  is "... and counts it among the jobs" "$(jf "$R_BODY" .jobs.failed)" 1
  cz_stop
  is "the daemon stops cleanly after the crashes" "$CZ_EXIT" 0
fi
t_done
