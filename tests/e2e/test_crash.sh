#!/bin/sh
# test_crash: kill -9 at random moments, CZ_CRASH_ITERS times (50 by default; bench/stress-crash.sh
# runs more), while uploads stream and jobs run (hardening.md F5/F6, P1-P3, P10). A ledger
# records every upload and job only once the daemon acknowledged it (201/202). After every
# restart: each ledger model is listed with the sha256 of the file sent; each ledger job
# exists; a succeeded job's artifact downloads whole and hashes to the reported sha256 (and
# keeps that sha256 forever); an unfinished job's artifact is refused (404/409), never served
# partially; the temporary files the killed daemon left are gone, and the blobs no row named
# were exactly the ones the restart removed. Then a SIGTERM with an upload streaming and jobs
# running and queued: exit 0, nothing lost, no attempt charged. At the end, every ledger job
# reaches an end state.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

ITERS=${CZ_CRASH_ITERS:-50}
MAXA=10          # a job killed this many times fails with worker_crash; rare with 10
MAX_DELAY_MS=350 # kill after a random delay of 0..this after the requests start
LEDGER=$T_TMP/ledger      # "model ID SHA256" and "job ID" lines, acknowledged only
VERIFIED=$T_TMP/verified  # "ID ARTIFACT_SHA256" of succeeded jobs whose artifact was checked
: >"$LEDGER"
: >"$VERIFIED"
if command -v sqlite3 >/dev/null 2>&1; then HAVE_SQLITE=yes; else HAVE_SQLITE=no; fi

# Six 8 MiB models with different contents; a q8_0 job on one takes a few hundred ms.
NM=6
i=1
while [ $i -le $NM ]; do
  st_write "$T_TMP/m$i.safetensors" '{"tensors": [
    {"name": "layers.0.mlp.weight", "dtype": "F32", "shape": [1024, 1024], "seed": '"$i"'},
    {"name": "layers.1.mlp.weight", "dtype": "F32", "shape": [1024, 1024], "seed": '"$((i + 50))"'}]}' ||
    bail "st_write failed"
  sha256_of "$T_TMP/m$i.safetensors" >"$T_TMP/m$i.sha"
  i=$((i + 1))
done
JOBSPEC='"steps": [{"op": "quantize", "type": "q8_0"}], "output": {"format": "gguf"}'

D=$(mktemp -d "$T_TMP/data.XXXXXX")
start() { cz_start "$D" --workers 2 --max-attempts $MAXA --log-level info; }

# Every blob under blobs/ that no model, job or calibration row names (the daemon is dead).
unreferenced_blobs() {
  sqlite3 -readonly "$D/compressd.db" "SELECT sha256 FROM models UNION SELECT artifact_sha256
    FROM jobs WHERE artifact_sha256 IS NOT NULL UNION SELECT report_sha256 FROM jobs WHERE
    report_sha256 IS NOT NULL UNION SELECT sha256 FROM calibrations" | sort >"$T_TMP/refd"
  find "$D/blobs" -type f -printf '%f\n' | sort | comm -23 - "$T_TMP/refd"
}

# verify: the ledger against the running daemon; one failure line per problem into $T_TMP/bad.
verify() {
  : >"$T_TMP/bad"
  curl -sf --max-time 10 "$CZ_URL/v1/models?page_size=1000" |
    jq -r '.models[] | "\(.id) \(.sha256)"' | sort >"$T_TMP/models" || echo "list models failed" >>"$T_TMP/bad"
  curl -sf --max-time 10 "$CZ_URL/v1/jobs?page_size=1000" |
    jq -r '.jobs[] | "\(.id) \(.state) \(.artifact.sha256 // "-")"' | sort >"$T_TMP/jobs" ||
    echo "list jobs failed" >>"$T_TMP/bad"
  grep '^model ' "$LEDGER" | cut -d' ' -f2- | sort | comm -23 - "$T_TMP/models" |
    sed 's/^/acknowledged model missing or with another sha256: /' >>"$T_TMP/bad"
  grep '^job ' "$LEDGER" | cut -d' ' -f2 | sort | while read -r id; do
    line=$(grep "^$id " "$T_TMP/jobs")
    if [ -z "$line" ]; then
      echo "acknowledged job missing: $id" >>"$T_TMP/bad"
      continue
    fi
    set -- $line
    if [ "$2" = succeeded ]; then
      old=$(grep "^$id " "$VERIFIED" | cut -d' ' -f2)
      if [ -z "$old" ]; then
        code=$(curl -s --max-time 20 -o "$T_TMP/art" -w '%{http_code}' "$CZ_URL/v1/jobs/$id/artifact")
        got=$(sha256_of "$T_TMP/art")
        if [ "$code" = 200 ] && [ "$got" = "$3" ]; then
          echo "$id $3" >>"$VERIFIED"
        else
          echo "artifact of $id: $code, sha256 $got, reported $3" >>"$T_TMP/bad"
        fi
      elif [ "$old" != "$3" ]; then
        echo "artifact sha256 of $id changed from $old to $3" >>"$T_TMP/bad"
      fi
    else
      code=$(curl -s --max-time 20 -o "$T_TMP/art" -w '%{http_code}' "$CZ_URL/v1/jobs/$id/artifact")
      case $code in
        404 | 409) ;;
        200) # it may have finished since the listing: then the bytes must be its whole artifact
          now=$(job_json "$id" | jq -r '"\(.state) \(.artifact.sha256)"')
          got=$(sha256_of "$T_TMP/art")
          if [ "$now" = "succeeded $got" ]; then
            echo "$id $got" >>"$VERIFIED"
          else
            echo "artifact of $2 job $id answered 200 with sha256 $got; the job is now: $now" >>"$T_TMP/bad"
          fi ;;
        *) echo "artifact of $2 job $id answered $code" >>"$T_TMP/bad" ;;
      esac
    fi
  done
  [ ! -s "$T_TMP/bad" ]
}

rand_ms() { shuf -i "0-$1" -n 1; }

start || bail "cannot start compressd"
upload "$T_TMP/m1.safetensors" m1
[ "$R_STATUS" = 201 ] || bail "first upload: $R_STATUS $R_BODY"
echo "model $MODEL_ID $(cat "$T_TMP/m1.sha")" >>"$LEDGER"

t0=$(now_ms)
n_bad=0 n_up=0 n_job=0 n_restart_bad=0 n_tmp=0 n_orphan=0 n_cut=0
it=1
while [ $it -le "$ITERS" ]; do
  # -- requests: one upload streaming (rate-limited so that a kill can cut it) and one job
  k=$(( $(rand_ms 1000) % NM + 1 ))
  rate=$(( 20 + $(rand_ms 60) ))   # MB/s: an 8 MiB upload takes 100..400 ms
  curl -s --max-time 30 --limit-rate "${rate}M" -o "$T_TMP/up.body" -w '%{http_code}' \
    -H 'Content-Type: application/octet-stream' --data-binary "@$T_TMP/m$k.safetensors" \
    "$CZ_URL/v1/models?name=m$k" >"$T_TMP/up.code" 2>/dev/null &
  UP_PID=$!
  mid=$(grep '^model ' "$LEDGER" | shuf -n 1 | cut -d' ' -f2)
  code=$(curl -s --max-time 10 -o "$T_TMP/job.body" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary '{"model": "'"$mid"'", '"$JOBSPEC"'}' \
    "$CZ_URL/v1/jobs")
  if [ "$code" = 202 ]; then
    echo "job $(jq -r .id "$T_TMP/job.body")" >>"$LEDGER"
    n_job=$((n_job + 1))
  fi
  sleep "$(printf '0.%03d' "$(rand_ms $MAX_DELAY_MS)")"
  # -- kill -9 at that random moment
  cz_stop "$CZ_PID" KILL
  wait "$UP_PID"
  if [ "$(cat "$T_TMP/up.code")" = 201 ]; then
    echo "model $(jq -r .id "$T_TMP/up.body") $(cat "$T_TMP/m$k.sha")" >>"$LEDGER"
    n_up=$((n_up + 1))
  else
    n_cut=$((n_cut + 1))
  fi
  # -- what the dead daemon left: temporary files, and blobs without a row
  ls "$D/tmp" >"$T_TMP/tmp.before"
  n_tmp=$((n_tmp + $(wc -l <"$T_TMP/tmp.before")))
  if [ $HAVE_SQLITE = yes ]; then
    unreferenced_blobs >"$T_TMP/orphans"
    n_orphan=$((n_orphan + $(wc -l <"$T_TMP/orphans")))
  fi
  # -- restart and check
  if ! start; then
    not_ok "iteration $it: restart after kill -9"
    break
  fi
  bad=
  left=$(ls "$D/tmp" | grep -Fx -f "$T_TMP/tmp.before")
  [ -n "$left" ] && bad="$bad; temporary files of the killed daemon still there: $left"
  if [ $HAVE_SQLITE = yes ]; then
    want=$(wc -l <"$T_TMP/orphans")
    got=$(sed -n 's/.*msg=recovered .*unreferenced_blobs_removed=\([0-9]*\).*/\1/p' "$CZ_LOG")
    [ "$got" = "$want" ] || bad="$bad; the restart removed '$got' unreferenced blobs, $want were there"
    for b in $(cat "$T_TMP/orphans"); do
      # gone, or published again by a re-run job (same content) and then named by its row
      if [ -e "$D/blobs/$(printf '%.2s' "$b")/$b" ]; then
        sleep 0.5
        [ -z "$(sqlite3 -readonly "$D/compressd.db" "SELECT 1 FROM jobs WHERE artifact_sha256 =
          '$b' OR report_sha256 = '$b' UNION SELECT 1 FROM models WHERE sha256 = '$b'")" ] &&
          bad="$bad; unreferenced blob $b survived the restart"
      fi
    done
  fi
  if ! verify; then bad="$bad; $(tr '\n' ';' <"$T_TMP/bad")"; fi
  if [ -n "$bad" ]; then
    not_ok "iteration $it: ledger and data directory after kill -9 and restart"
    diag "$bad"
    n_bad=$((n_bad + 1))
    [ $n_bad -ge 3 ] && break
  fi
  it=$((it + 1))
done
elapsed=$(( $(now_ms) - t0 ))
is "$ITERS kill -9 / restart cycles, every acknowledged upload and job intact after each" "$n_bad" 0
diag "$((it - 1)) cycles in $elapsed ms: $n_up uploads acknowledged, $n_cut cut by the kill, $n_job jobs acknowledged;" \
  "the killed daemons left $n_tmp temporary file(s) and $n_orphan unreferenced blob(s), all removed at restart"
check "some uploads were acknowledged and some cut by the kill" [ $n_up -gt 0 -a $n_cut -gt 0 ]
[ $HAVE_SQLITE = yes ] || skip "unreferenced blobs removed at restart" "no sqlite3 command (apt-get install sqlite3)"

# -- SIGTERM with an upload streaming, a job running and more queued (F8/P9): exit 0; after the
# restart every acknowledged upload and job is there and the stop charged no attempt
curl -s --max-time 30 --limit-rate 20M -o "$T_TMP/up.body" -w '%{http_code}' \
  -H 'Content-Type: application/octet-stream' --data-binary "@$T_TMP/m2.safetensors" \
  "$CZ_URL/v1/models?name=m2" >"$T_TMP/up.code" 2>/dev/null &
UP_PID=$!
TJ=
for k in 1 2 3 4 5; do
  submit '{"model": "'"$(grep '^model ' "$LEDGER" | shuf -n 1 | cut -d' ' -f2)"'", '"$JOBSPEC"'}'
  if [ "$R_STATUS" = 202 ]; then
    TJ="$TJ $JOB_ID"
    echo "job $JOB_ID" >>"$LEDGER"
    n_job=$((n_job + 1))
  fi
done
set -- $TJ
wait_running "$1" 30 || wait_claimed "$1" 30
cz_stop "$CZ_PID" TERM 20
is "SIGTERM with work in flight: exit 0" "$CZ_EXIT" 0
wait "$UP_PID"
if [ "$(cat "$T_TMP/up.code")" = 201 ]; then
  echo "model $(jq -r .id "$T_TMP/up.body") $(cat "$T_TMP/m2.sha")" >>"$LEDGER"
fi
diag "the upload in flight at SIGTERM answered $(cat "$T_TMP/up.code"); $(grep -c 'job released' "$CZ_LOG") job(s) released"
start || bail "cannot restart compressd after SIGTERM"
n_one=0
for id in $TJ; do
  wait_job "$id" 60 && [ "$(jf "$JOB" '"\(.state) \(.attempts)"')" = "succeeded 1" ] && n_one=$((n_one + 1))
done
is "the $(echo $TJ | wc -w) jobs submitted before SIGTERM succeed after the restart, each with attempts 1" "$n_one" "$(echo $TJ | wc -w)"

# -- quiesce: every acknowledged job reaches an end state; none ran more than max_attempts times
n_end=0 n_ok=0
for id in $(grep '^job ' "$LEDGER" | cut -d' ' -f2); do
  if wait_job "$id" 60; then
    n_end=$((n_end + 1))
    case "$(jf "$JOB" '"\(.state) \(.error.code)"')" in
      "succeeded null" | "failed worker_crash") n_ok=$((n_ok + 1)) ;;
      *) diag "job $id: $JOB" ;;
    esac
    [ "$(jf "$JOB" ".attempts <= $MAXA")" = true ] || diag "job $id ran $(jf "$JOB" .attempts) times"
  fi
done
is "every acknowledged job ($n_job) reaches an end state" "$n_end" "$n_job"
is "each succeeded, or failed with worker_crash after $MAXA kills" "$n_ok" "$n_job"
diag "attempts: $(curl -sf "$CZ_URL/v1/jobs?page_size=1000" | jq -r '[.jobs[].attempts] | group_by(.) | map("\(.[0])x\(length)") | join(" ")')"
check "after quiescing, the ledger still checks out" verify
[ -s "$T_TMP/bad" ] && diag "$(cat "$T_TMP/bad")"
cz_stop
is "SIGTERM: exit 0" "$CZ_EXIT" 0
check "nothing left in DATA_DIR/tmp" dir_empty "$D/tmp"
if [ $HAVE_SQLITE = yes ]; then
  is "PRAGMA integrity_check" "$(sqlite3 -readonly "$D/compressd.db" 'PRAGMA integrity_check')" ok
  is "no unreferenced blob after a clean stop" "$(unreferenced_blobs | wc -l)" 0
fi
if grep -q 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$T_TMP"/daemon*.log; then
  not_ok "no sanitizer reports in the daemon logs"
  diag "$(grep -h -A5 'ERROR: \|runtime error:' "$T_TMP"/daemon*.log | head -30)"
else
  ok "no sanitizer reports in the daemon logs"
fi
t_done
