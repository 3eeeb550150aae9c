# lib.sh: shared helpers of the end-to-end tests (sourced by tests/e2e/test_*.sh; POSIX sh).
#
# Environment: CZ_SRCDIR (source tree, may be read-only) and CZ_BUILDDIR (holds the
# compressd binary); both are set by `make check` (AM_TESTS_ENVIRONMENT).
#
# What it gives a test:
#   T_TMP                    a private temporary directory, removed at exit
#   ok/not_ok/check/diag     TAP output with a running counter; t_done prints the plan
#   cz_start DATA_DIR [ARGS] start `compressd serve` on 127.0.0.1:0; sets CZ_PID, CZ_PORT,
#                            CZ_URL, CZ_LOG (stderr) and CZ_OUT (stdout)
#   cz_stop [PID [SIG]]      signal a daemon (default: CZ_PID, TERM) and reap it; sets
#                            CZ_EXIT to its exit status
#   req METHOD PATH [CURL ARGS]  one request to CZ_URL; sets R_STATUS, R_BODY, R_HDRS (file)
#   jf JSON FILTER           jq -r FILTER on a JSON string
#   expect_error DESC STATUS CODE   checks the last req's status and error.code
# Every daemon started with cz_start is killed at exit, and T_TMP (with the data
# directories created in it) is removed.

# shellcheck disable=SC2034 # the variables set here are used by the test scripts
: "${CZ_SRCDIR:?CZ_SRCDIR must name the source tree}"
: "${CZ_BUILDDIR:?CZ_BUILDDIR must name the build tree}"
CZ_BIN=$CZ_BUILDDIR/compressd
CZ_TOOLS=$CZ_SRCDIR/tests/tools
CZ_DATA=$CZ_SRCDIR/tests/data
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
export LC_ALL=C

T_N=0
T_FAILED=0
T_PIDS=
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/cz-e2e.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }

t_cleanup() {
  for p in $T_PIDS; do
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  T_PIDS=
  rm -rf "$T_TMP"
}
trap 't_cleanup' EXIT
trap 't_cleanup; exit 1' INT TERM HUP

# ---- TAP ----

ok() { T_N=$((T_N + 1)); echo "ok $T_N - $*"; }
not_ok() { T_N=$((T_N + 1)); T_FAILED=$((T_FAILED + 1)); echo "not ok $T_N - $*"; }
# diag TEXT...: each line of TEXT as a TAP comment
diag() { printf '%s\n' "$*" | sed 's/^/# /'; }
# check DESC COMMAND [ARGS]: ok if the command succeeds
check() {
  _d=$1
  shift
  if "$@"; then ok "$_d"; else not_ok "$_d"; fi
}
# is DESC GOT WANT: string equality, with both values as diagnostics on failure
is() {
  if [ "$2" = "$3" ]; then
    ok "$1"
  else
    not_ok "$1"
    diag "got:  '$2'" "want: '$3'"
  fi
}
t_done() {
  echo "1..$T_N"
  [ "$T_FAILED" -eq 0 ] || diag "$T_FAILED of $T_N failed"
}
bail() { echo "Bail out! $*"; exit 1; }

# ---- the daemon ----

# Milliseconds since the epoch (GNU date).
now_ms() { date +%s%3N; }

# cz_start DATA_DIR [EXTRA ARGS...]: start a daemon and wait (up to 10 s) for the line
# "compressd X listening on http://127.0.0.1:PORT/ ...". Returns 1 (with the log as
# diagnostics) if it exits or does not come up.
# slow_model NAME MS: daemons started after this sleep MS milliseconds before each task of a
# job on the model named NAME (the test builds' slow hook, daemon/cz_worker.c), so that a job
# is still running when a test needs it to be; builds without test hooks ignore it.
slow_model() { CZ_TEST_SLOW_MODEL=$1; CZ_TEST_SLOW_MS=$2; export CZ_TEST_SLOW_MODEL CZ_TEST_SLOW_MS; }

cz_start() {
  _dir=$1
  shift
  CZ_N=$(( ${CZ_N:-0} + 1 ))
  CZ_OUT=$T_TMP/daemon$CZ_N.out
  CZ_LOG=$T_TMP/daemon$CZ_N.log
  : >"$CZ_OUT"
  "$CZ_BIN" serve --listen 127.0.0.1:0 --data-dir "$_dir" "$@" >"$CZ_OUT" 2>"$CZ_LOG" &
  CZ_PID=$!
  T_PIDS="$T_PIDS $CZ_PID"
  CZ_PORT=
  _i=0
  while [ $_i -lt 100 ]; do
    CZ_PORT=$(sed -n 's|^compressd .* listening on http://127\.0\.0\.1:\([0-9][0-9]*\)/.*|\1|p' "$CZ_OUT")
    [ -n "$CZ_PORT" ] && break
    kill -0 "$CZ_PID" 2>/dev/null || break
    sleep 0.1
    _i=$((_i + 1))
  done
  if [ -z "$CZ_PORT" ]; then
    diag "compressd did not start (data dir $_dir); its output:" "$(tail -20 "$CZ_OUT" "$CZ_LOG")"
    kill -KILL "$CZ_PID" 2>/dev/null
    wait "$CZ_PID" 2>/dev/null
    return 1
  fi
  CZ_URL=http://127.0.0.1:$CZ_PORT
  return 0
}

# cz_stop [PID [SIGNAL [TIMEOUT_S]]]: send SIGNAL (TERM) and wait up to TIMEOUT_S (10) for the
# process to exit; KILL it after that. CZ_EXIT gets the exit status (128+N for a signal),
# CZ_STOP_MS how long it took. Returns 1 if it had to be killed.
cz_stop() {
  _pid=${1:-$CZ_PID}
  _sig=${2:-TERM}
  _max=$(( ${3:-10} * 10 ))
  _t0=$(now_ms)
  kill -"$_sig" "$_pid" 2>/dev/null
  _i=0
  _rc=0
  # a reaped child is gone for kill -0 only after wait, so poll /proc for a zombie too
  while kill -0 "$_pid" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$_pid/stat" 2>/dev/null)" != Z ]; do
    if [ $_i -ge $_max ]; then
      kill -KILL "$_pid" 2>/dev/null
      _rc=1
      break
    fi
    sleep 0.1
    _i=$((_i + 1))
  done
  wait "$_pid"
  CZ_EXIT=$?
  CZ_STOP_MS=$(( $(now_ms) - _t0 ))
  _np=
  for _p in $T_PIDS; do [ "$_p" = "$_pid" ] || _np="$_np $_p"; done
  T_PIDS=$_np
  return $_rc
}

# ---- HTTP and JSON ----

# req METHOD PATH [CURL ARGS...]: R_STATUS (000 if no HTTP answer), R_BODY, R_HDRS (a file).
req() { req_to "$T_TMP/last.body" "$@"; }

# req_to FILE METHOD PATH [CURL ARGS...]: req with the body saved in FILE; R_BODY is its text
# when FILE is last.body, empty otherwise.
req_to() {
  _f=$1
  _m=$2
  _p=$3
  shift 3
  R_HDRS=$T_TMP/last.hdr
  : >"$R_HDRS"
  : >"$_f"
  R_BODY=
  R_STATUS=$(curl -s --max-time 30 -o "$_f" -D "$R_HDRS" -w '%{http_code}' \
    -X "$_m" "$@" "$CZ_URL$_p")
  [ "$_f" = "$T_TMP/last.body" ] && R_BODY=$(cat "$_f")
  return 0
}

# header NAME: the value of a header of the last response (first occurrence, no CR).
header() { grep -i "^$1:" "$R_HDRS" | head -1 | sed 's/^[^:]*:[[:space:]]*//' | tr -d '\r'; }

# jf JSON FILTER: jq -r, empty output on invalid JSON.
jf() { printf '%s' "$1" | jq -r "$2" 2>/dev/null; }

# expect_error DESC STATUS CODE: the last response is STATUS with {"error": {"code": CODE,
# "message": non-empty}}; CODE "*" accepts any non-empty code.
expect_error() {
  _code=$(jf "$R_BODY" '.error.code // empty')
  _msg=$(jf "$R_BODY" '.error.message // empty')
  if [ "$R_STATUS" = "$2" ] && [ -n "$_msg" ] && { [ "$_code" = "$3" ] || { [ "$3" = "*" ] && [ -n "$_code" ]; }; }; then
    ok "$1 ($R_STATUS $_code)"
  else
    not_ok "$1"
    diag "want: $2 $3" "got:  $R_STATUS $(printf '%s' "$R_BODY" | head -c 400)"
  fi
}

# upload FILE NAME: POST /v1/models; on 201 sets MODEL_ID.
upload() {
  req POST "/v1/models?name=$2" -H 'Content-Type: application/octet-stream' --data-binary "@$1"
  MODEL_ID=$(jf "$R_BODY" '.id // empty')
}

# submit JSON: POST /v1/jobs; on 202 sets JOB_ID.
submit() {
  req POST /v1/jobs -H 'Content-Type: application/json' --data-binary "$1"
  JOB_ID=$(jf "$R_BODY" '.id // empty')
}

# job_json ID: the job's JSON (empty on error).
job_json() { curl -sf --max-time 10 "$CZ_URL/v1/jobs/$1"; }

# wait_job ID TIMEOUT_S: poll every 100 ms until the job is succeeded, failed or canceled;
# JOB gets its last JSON. Returns 1 on timeout.
wait_job() {
  _max=$(( $2 * 10 ))
  _i=0
  while [ $_i -lt $_max ]; do
    JOB=$(job_json "$1")
    case $(jf "$JOB" .state) in succeeded | failed | canceled) return 0 ;; esac
    sleep 0.1
    _i=$((_i + 1))
  done
  diag "job $1 did not finish in $2 s: $JOB"
  return 1
}

# wait_running ID TIMEOUT_S: poll every 50 ms until the job is running with
# progress.bytes_done > 0. Returns 1 on timeout or if the job finished first.
wait_running() {
  _max=$(( $2 * 20 ))
  _i=0
  while [ $_i -lt $_max ]; do
    JOB=$(job_json "$1")
    if [ "$(jf "$JOB" '.state == "running" and .progress.bytes_done > 0')" = true ]; then return 0; fi
    case $(jf "$JOB" .state) in succeeded | failed | canceled)
      diag "job $1 finished before it was seen running: $JOB"
      return 1 ;;
    esac
    sleep 0.05
    _i=$((_i + 1))
  done
  diag "job $1 not seen running with bytes_done > 0 in $2 s: $JOB"
  return 1
}

# wait_claimed ID TIMEOUT_S: poll every 20 ms until the job is no longer queued (a worker
# claimed it); JOB gets its JSON. Returns 1 on timeout.
wait_claimed() {
  _max=$(( $2 * 50 ))
  _i=0
  while [ $_i -lt $_max ]; do
    JOB=$(job_json "$1")
    [ "$(jf "$JOB" .state)" != queued ] && return 0
    sleep 0.02
    _i=$((_i + 1))
  done
  diag "job $1 still queued after $2 s"
  return 1
}

# skip DESC REASON: a TAP test that could not be checked
skip() { T_N=$((T_N + 1)); echo "ok $T_N - $1 # SKIP $2"; }

# dir_empty DIR: DIR exists and holds nothing (lists what it holds otherwise).
dir_empty() {
  [ -d "$1" ] || { diag "$1 does not exist"; return 1; }
  [ -z "$(ls -A "$1")" ] && return 0
  diag "$1 holds:" "$(ls -lA "$1")"
  return 1
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# st_write OUT SPEC_JSON: write a safetensors file with a tiny independent writer.
# SPEC_JSON: {"metadata": {...} (optional), "tensors": [{"name": N, "dtype": "F32"|"F16"|"BF16",
# "shape": [...], "seed": S (optional), "nan": true (optional: one NaN in every 1021
# elements)}]}. The values are k/64 for k in -125..125 (exact in all three dtypes), in a
# period of 1021 elements, so that rows differ and a large tensor is written quickly by
# repeating bytes. The header is padded with spaces to a multiple of 8 bytes.
st_write() {
  "$PY" - "$1" "$2" <<'PYEOF'
import json, struct, sys
out, spec = sys.argv[1], json.loads(sys.argv[2])
PERIOD = 1021
SIZE = {"F32": 4, "F16": 2, "BF16": 2}

def period_bytes(t):
    seed = t.get("seed", 0)
    vals = [((k * 37 + seed * 11) % 251 - 125) / 64.0 for k in range(PERIOD)]
    if t.get("nan"):
        vals[5] = float("nan")
    dt = t["dtype"]
    if dt == "F32":
        return struct.pack("<%df" % PERIOD, *vals)
    if dt == "F16":
        return struct.pack("<%de" % PERIOD, *vals)
    if dt == "BF16":
        f = struct.pack("<%df" % PERIOD, *vals)
        return b"".join(f[i + 2:i + 4] for i in range(0, len(f), 4))
    raise SystemExit("st_write: dtype %s not supported" % dt)

hdr, off, tensors = {}, 0, spec["tensors"]
if "metadata" in spec:
    hdr["__metadata__"] = spec["metadata"]
for t in tensors:
    n = 1
    for d in t["shape"]:
        n *= d
    t["nbytes"] = n * SIZE[t["dtype"]]
    hdr[t["name"]] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [off, off + t["nbytes"]]}
    off += t["nbytes"]
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    for t in tensors:
        p = period_bytes(t)
        chunk = p * (max(1, (64 << 20) // len(p)))  # ~64 MiB of whole periods
        left = t["nbytes"]
        while left > 0:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
PYEOF
}
