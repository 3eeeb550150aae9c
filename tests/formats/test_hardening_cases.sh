#!/bin/sh
# test_hardening_cases: every S and G case of hardening.md section 8, uploaded to a real daemon
# with POST /v1/models. One TAP line per case id (S1..S24, G1..G10); each id has one or more
# variants (tests/formats/make_cases.py builds them and says what each must get). For every
# variant:
#   - the status (201, or 400/413/422) and error.code are exactly the expected ones;
#   - the error message (or, when accepted, the model's tensor list) names the tensor or key
#     where the case has one;
#   - afterwards nothing is left: DATA_DIR/tmp empty, no file under DATA_DIR/blobs, no model
#     row (GET /v1/models), the daemon's descriptor count back to what it was, and its peak RSS
#     grown by less than 32 MiB (no allocation sized by what a file claims; S21's million-entry
#     header is the one case allowed to cost memory). An accepted file is deleted again before
#     these checks.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

CASES=$T_TMP/cases
"$PY" "$CZ_SRCDIR/tests/formats/make_cases.py" "$CASES" || bail "make_cases.py failed"

DATA=$(mktemp -d "$T_TMP/data.XXXXXX")
cz_start "$DATA" --workers 1 || bail "cannot start compressd"

model_ids() { curl -sf --max-time 30 "$CZ_URL/v1/models?page_size=1000" | jq -r '[.models[].id] | join(" ")'; }
fd_count() { ls "/proc/$CZ_PID/fd" 2>/dev/null | wc -l; }
hwm_kb() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$CZ_PID/status"; }
blob_files() { find "$DATA/blobs" -type f | sort; }

# fds_back_to N: poll (up to 3 s) until the daemon holds N descriptors again; the server side
# of a finished connection closes a moment after the client has its answer.
fds_back_to() {
  _i=0
  while [ $_i -lt 60 ]; do
    [ "$(fd_count)" -le "$1" ] && return 0
    sleep 0.05
    _i=$((_i + 1))
  done
  return 1
}

# A first request so that lazily opened descriptors (database, log) exist before the baseline.
req GET /v1/models
[ "$R_STATUS" = 200 ] || bail "GET /v1/models: $R_STATUS"
fds_back_to 1000000
sleep 0.2
FD0=$(fd_count)
diag "daemon pid $CZ_PID holds $FD0 descriptors at rest"

CUR=
CUR_FAIL=0
CUR_N=0
flush_case() {
  [ -n "$CUR" ] || return 0
  if [ "$CUR_FAIL" -eq 0 ]; then
    ok "$CUR ($CUR_N variant$([ "$CUR_N" -gt 1 ] && echo s)): ${CUR_SUMMARY%;}; nothing left behind"
  else
    not_ok "$CUR: $CUR_FAIL of $CUR_N variants wrong"
  fi
}
# bad TEXT: this variant is wrong (counted once per variant)
bad() {
  [ "$V_BAD" -eq 0 ] && CUR_FAIL=$((CUR_FAIL + 1))
  V_BAD=1
  diag "$CUR [$desc] $*"
}

TAB=$(printf '\t')
while IFS=$TAB read -r id file status code name desc; do
  if [ "$id" != "$CUR" ]; then
    flush_case
    CUR=$id; CUR_FAIL=0; CUR_N=0; CUR_SUMMARY=
  fi
  CUR_N=$((CUR_N + 1))
  V_BAD=0
  hwm0=$(hwm_kb)
  # curl's own upload (lib.sh's gives up after 30 s): S21's 55 MB header of a million entries
  # takes the daemon long under ASan on a loaded machine
  req_to "$T_TMP/last.body" POST "/v1/models?name=$id" --max-time 300 \
    -H 'Content-Type: application/octet-stream' --data-binary "@$CASES/$file"
  MODEL_ID=$(jf "$R_BODY" '.id // empty')
  got_code=$(jf "$R_BODY" '.error.code // empty')
  got_msg=$(jf "$R_BODY" '.error.message // empty')
  case " $CUR_SUMMARY " in
    *" $R_STATUS${got_code:+ $got_code};"*) ;;
    *) CUR_SUMMARY="${CUR_SUMMARY:+$CUR_SUMMARY }$R_STATUS${got_code:+ $got_code};" ;;
  esac
  if [ "$status" = 201 ]; then
    if [ "$R_STATUS" != 201 ] || [ -z "$MODEL_ID" ]; then
      bad "want 201, got $R_STATUS $(printf '%s' "$R_BODY" | head -c 300)"
    else
      if [ "$name" != - ]; then
        req GET "/v1/models/$MODEL_ID"
        if [ "$(printf '%s' "$R_BODY" | jq -r --arg n "$name" '[.tensors[].name] | index([$n]) != null' 2>/dev/null)" != true ]; then
          bad "accepted, but tensor '$name' is not in GET /v1/models/$MODEL_ID: $(printf '%s' "$R_BODY" | head -c 300)"
        fi
      fi
      req DELETE "/v1/models/$MODEL_ID"
      [ "$R_STATUS" = 204 ] || bad "DELETE /v1/models/$MODEL_ID: $R_STATUS"
    fi
  else
    if [ "$R_STATUS" != "$status" ] || [ "$got_code" != "$code" ] || [ -z "$got_msg" ]; then
      bad "want $status $code, got $R_STATUS $(printf '%s' "$R_BODY" | head -c 300)"
      # an upload accepted by mistake is deleted, so that the next variants start clean
      if [ "$R_STATUS" = 201 ] && [ -n "$MODEL_ID" ]; then req DELETE "/v1/models/$MODEL_ID"; fi
    elif [ "$name" != - ]; then
      case $got_msg in
        *"$name"*) ;;
        *) bad "message does not name '$name': $got_msg" ;;
      esac
    fi
  fi
  # nothing left behind
  [ -z "$(ls -A "$DATA/tmp")" ] || bad "DATA_DIR/tmp holds: $(ls -A "$DATA/tmp")"
  [ -z "$(blob_files)" ] || bad "DATA_DIR/blobs holds: $(blob_files)"
  ids=$(model_ids)
  [ -z "$ids" ] || bad "models listed: $ids"
  fds_back_to "$FD0" || bad "descriptors: $(fd_count), $FD0 before"
  hwm1=$(hwm_kb)
  if [ "$desc" = "1000001 one-byte tensors" ]; then
    diag "$id [$desc]: daemon peak RSS $((hwm0 / 1024)) -> $((hwm1 / 1024)) MiB"
  elif [ $((hwm1 - hwm0)) -gt 32768 ]; then
    bad "peak RSS grew by $(( (hwm1 - hwm0) / 1024 )) MiB"
  fi
done <"$CASES/manifest.tsv"
flush_case

req GET /readyz
is "the daemon is still ready after every case" "$R_STATUS" 200
if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$CZ_LOG"; then
  not_ok "no sanitizer reports in the daemon log"
  diag "$(grep -E -A20 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$CZ_LOG" | head -40)"
else
  ok "no sanitizer reports in the daemon log"
fi
cz_stop
is "the daemon exits 0 on SIGTERM" "$CZ_EXIT" 0
t_done
