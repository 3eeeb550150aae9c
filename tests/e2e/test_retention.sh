#!/bin/sh
# test_retention: DELETE of finished jobs and the retention sweep with a real daemon: a tiny
# retention_age removes a finished job, its artifact and report, then its model; a disk_quota
# evicts the oldest model first; a quota of 1 byte leaves the model of queued and running jobs
# alone until they are done; the bytes reclaimed show on /metrics. (The other things never
# removed are checked in tests/daemon/test_retention.c with a clock the test controls.)
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

blob_files() { find "$1/blobs" -type f | wc -l; }
metric() { curl -s "$CZ_URL/metrics" | sed -n "s/^$1 //p"; }
# wait_gone PATH TIMEOUT_S: poll until GET PATH is 404
wait_gone() {
  _i=0
  while [ "$(curl -s -o /dev/null -w '%{http_code}' "$CZ_URL$1")" != 404 ]; do
    [ $_i -ge $(( $2 * 10 )) ] && return 1
    sleep 0.1
    _i=$((_i + 1))
  done
}
tiny_st() { # tiny_st OUT SEED: a safetensors model of ~660 bytes, [4, 32] F32
  st_write "$1" '{"tensors": [{"name": "blk.0.ffn_up.weight", "dtype": "F32", "shape": [4, 32],
    "seed": '"$2"'}]}' || bail "st_write failed"
}

# ---- age: --retention-age 3, a sweep every second ----
DATA=$T_TMP/age
cz_start "$DATA" --workers 1 --retention-age 3 --retention-interval 1 || bail "cannot start compressd"
upload "$CZ_DATA/tiny-llama-f16.gguf" tiny-llama
M=$MODEL_ID
MODEL_BYTES=$(wc -c <"$CZ_DATA/tiny-llama-f16.gguf")
submit '{"model": "'"$M"'", "steps": [{"op": "quantize", "type": "q8_0"}]}'
J=$JOB_ID
wait_job "$J" 60 || bail "job did not finish"
ART_BYTES=$(jf "$JOB" .artifact.bytes)
REPORT_BYTES=$(curl -s "$CZ_URL/v1/jobs/$J/report" | wc -c)
T_DONE=$(now_ms)
is "just finished: job, artifact and model still there, 3 blob files" \
  "$(curl -s -o /dev/null -w '%{http_code}' "$CZ_URL/v1/jobs/$J/artifact") $(curl -s -o /dev/null -w '%{http_code}' "$CZ_URL/v1/models/$M") $(blob_files "$DATA")" \
  "200 200 3"
wait_gone "/v1/jobs/$J" 15
is "the job is gone a few seconds after it finished (404)" \
  "$(curl -s -o /dev/null -w '%{http_code}' "$CZ_URL/v1/jobs/$J")" 404
gone_after=$(( $(now_ms) - T_DONE ))
check "not before retention_age (3 s): gone after ${gone_after} ms" test "$gone_after" -ge 2000
wait_gone "/v1/models/$M" 5
is "then its model, which no job names any more" "$(curl -s -o /dev/null -w '%{http_code}' "$CZ_URL/v1/models/$M")" 404
is "no blob file left" "$(blob_files "$DATA")" 0
is "metrics: 1 job and 1 model deleted" \
  "$(metric 'compressd_deleted_total{kind="job"}') $(metric 'compressd_deleted_total{kind="model"}')" "1 1"
is "metrics: the bytes reclaimed are the model, the artifact and the report" \
  "$(metric compressd_reclaimed_bytes_total)" "$((MODEL_BYTES + ART_BYTES + REPORT_BYTES))"
cz_stop "$CZ_PID"
is "daemon exits 0" "$CZ_EXIT" 0

# ---- DELETE /v1/jobs/{id} without retention ----
DATA=$T_TMP/del
cz_start "$DATA" --workers 1 || bail "cannot start compressd"
upload "$CZ_DATA/tiny-llama-f16.gguf" tiny-llama
M=$MODEL_ID
submit '{"model": "'"$M"'", "steps": [{"op": "quantize", "type": "q8_0"}]}'
J=$JOB_ID
wait_job "$J" 60 || bail "job did not finish"
ART_BYTES=$(jf "$JOB" .artifact.bytes)
REPORT_BYTES=$(curl -s "$CZ_URL/v1/jobs/$J/report" | wc -c)
req DELETE "/v1/jobs/$J"
is "DELETE a succeeded job: 204" "$R_STATUS" 204
req GET "/v1/jobs/$J/artifact"
expect_error "its artifact is gone" 404 not_found
is "its artifact and report files are gone, the model's stays" "$(blob_files "$DATA")" 1
req DELETE "/v1/models/$M"
is "then DELETE the model: 204" "$R_STATUS" 204
is "no blob file left" "$(blob_files "$DATA")" 0
is "metrics count both deletions and every byte" \
  "$(metric 'compressd_deleted_total{kind="job"}') $(metric 'compressd_deleted_total{kind="model"}') $(metric compressd_reclaimed_bytes_total)" \
  "1 1 $((MODEL_BYTES + ART_BYTES + REPORT_BYTES))"
cz_stop "$CZ_PID"

# ---- disk quota: two models fit, a third evicts the oldest ----
DATA=$T_TMP/quota
for i in 1 2 3 4; do tiny_st "$T_TMP/q$i.safetensors" "$i"; done
SZ=$(wc -c <"$T_TMP/q1.safetensors")
cz_start "$DATA" --workers 1 --disk-quota $((2 * SZ + 10)) --retention-interval 1 \
  || bail "cannot start compressd"
upload "$T_TMP/q1.safetensors" q1; Q1=$MODEL_ID
upload "$T_TMP/q2.safetensors" q2; Q2=$MODEL_ID
sleep 1.5
is "two models within the quota: both stay" \
  "$(curl -s -o /dev/null -w '%{http_code}' "$CZ_URL/v1/models/$Q1") $(curl -s -o /dev/null -w '%{http_code}' "$CZ_URL/v1/models/$Q2")" "200 200"
upload "$T_TMP/q3.safetensors" q3; Q3=$MODEL_ID
wait_gone "/v1/models/$Q1" 10
is "a third: the oldest (q1) is evicted, q2 and q3 stay" \
  "$(for m in $Q1 $Q2 $Q3; do curl -s -o /dev/null -w '%{http_code} ' "$CZ_URL/v1/models/$m"; done)" "404 200 200 "
upload "$T_TMP/q4.safetensors" q4; Q4=$MODEL_ID
wait_gone "/v1/models/$Q2" 10
is "a fourth: then q2, the oldest left" \
  "$(for m in $Q2 $Q3 $Q4; do curl -s -o /dev/null -w '%{http_code} ' "$CZ_URL/v1/models/$m"; done)" "404 200 200 "
is "the blob store is within the quota" "$(blob_files "$DATA")" 2
is "metrics: 2 models deleted, their bytes reclaimed" \
  "$(metric 'compressd_deleted_total{kind="model"}') $(metric compressd_reclaimed_bytes_total)" "2 $((2 * SZ))"
cz_stop "$CZ_PID"
is "daemon exits 0" "$CZ_EXIT" 0

# ---- in use: a quota of 1 byte removes nothing a queued or running job needs ----
# Daemon 1 (no quota) takes the upload and two jobs and is stopped at once, which hands them
# back to the queue; daemon 2 starts with the quota, so the model is in use from its first
# sweep on: it must answer 200 for as long as one of its jobs is queued or running, and
# everything goes once they are done.
DATA=$T_TMP/inuse
st_write "$T_TMP/big.safetensors" '{"tensors": [
  {"name": "blk.0.ffn_up.weight", "dtype": "F16", "shape": [4096, 4096], "seed": 1},
  {"name": "blk.0.ffn_down.weight", "dtype": "F16", "shape": [4096, 4096], "seed": 2}]}'
# jobs on "big" sleep 300 ms before each task in test builds, so that the polls below see them
# queued or running (a release-speed build finished both before the first poll)
slow_model big 300
cz_start "$DATA" --workers 1 || bail "cannot start compressd"
upload "$T_TMP/big.safetensors" big
BIG=$MODEL_ID
submit '{"model": "'"$BIG"'", "steps": [{"op": "quantize", "type": "q8_0"}], "output": {"format": "gguf"}}'
JA=$JOB_ID
submit '{"model": "'"$BIG"'", "steps": [{"op": "quantize", "type": "q4_0"}], "output": {"format": "gguf"}}'
JB=$JOB_ID
cz_stop "$CZ_PID"
cz_start "$DATA" --workers 1 --disk-quota 1 --retention-interval 1 || bail "cannot start compressd"
polls=0 missing=0
while :; do
  sa=$(jf "$(job_json "$JA")" .state) sb=$(jf "$(job_json "$JB")" .state)
  case "$sa $sb" in *queued* | *running*) ;; *) break ;; esac
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$CZ_URL/v1/models/$BIG")" = 200 ] || missing=$((missing + 1))
  polls=$((polls + 1))
  [ $polls -ge 1200 ] && break
  sleep 0.05
done
is "while its jobs were queued or running the model answered 200 ($polls polls)" "$missing" 0
check "...and the jobs ran at all under the quota (polled while they were active)" test "$polls" -gt 0
check "...while a sweep found nothing it may remove (the log says so)" \
  grep -q 'over the disk quota with nothing left to remove' "$CZ_LOG"
wait_gone "/v1/models/$BIG" 20
is "once both jobs are over, the jobs and then the model go" \
  "$(for p in "/v1/jobs/$JA" "/v1/jobs/$JB" "/v1/models/$BIG"; do curl -s -o /dev/null -w '%{http_code} ' "$CZ_URL$p"; done)" \
  "404 404 404 "
is "the blob store is empty" "$(blob_files "$DATA")" 0
cz_stop "$CZ_PID"
is "daemon exits 0" "$CZ_EXIT" 0

if grep -q 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$T_TMP"/daemon*.log; then
  not_ok "no sanitizer reports in the daemon logs"
  diag "$(grep -h -A5 'ERROR: \|runtime error:' "$T_TMP"/daemon*.log | head -30)"
else
  ok "no sanitizer reports in the daemon logs"
fi
t_done
