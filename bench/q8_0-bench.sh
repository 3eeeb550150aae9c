#!/usr/bin/env bash
# q8_0-bench.sh: time a whole-model Q8_0 run of compressd on a >= 1 GB F16 model, through the
# CLI and through the service, against the cost of reading and copying the same file.
#
# usage: bench/q8_0-bench.sh [COMPRESSD] [--clean] [--size BYTES] [--gguf-input]
#   COMPRESSD     the binary to measure (default: build/release/compressd of this tree);
#                 the script builds nothing
#   --clean       also delete the generated model (kept by default in $COMPRESSD_BENCH_CACHE,
#                 /tmp/compressd-bench-cache, and reused by the next run)
#   --size BYTES  model size for bench/make-model.py (default 1.1G: 8 layers, 1084 MB)
#   --gguf-input  generate and compress a GGUF F16 model instead of safetensors
#
# Measured, the input warm in the page cache for every run:
#   baseline  `cat MODEL > /dev/null`, `cp MODEL` to the same filesystem, and the fsync of
#             that copy (compressd fsyncs its outputs, so "cp + fsync" is the like-for-like
#             figure); `sha256sum MODEL` (compressd hashes its input and its artifacts)
#   CLI       `compressd compress` to GGUF under /usr/bin/time -v: wall time, maximum RSS
#   service   `compressd serve` on 127.0.0.1:0 with a temporary data dir: upload (curl -T),
#             job (submit to succeeded, polled every 0.1 s), download; VmHWM of the daemon
#             read from /proc just before SIGTERM
# Both processes are also sampled every 0.05 s for RssAnon (heap and stacks) and RssFile
# (pages of mapped files): the input is read through mmap, and the kernel counts every
# touched page of the mapping in RSS although it is reclaimable page cache.
# CPU accounting: compressd's own CPU time, this script's children (curl, jq), and the rest
# of the machine from /proc/stat; a warning says when other processes took enough CPU to
# make the figures pessimistic (the 2 cores are shared).
# The CLI and service artifacts must be byte-identical (sha256); the exit status is 1 if
# they are not, or if a run fails. Takes about a minute on 2 cores once the model exists.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

bin="" clean=0 size=1.1G input=safetensors
while [ $# -gt 0 ]; do
  case $1 in
    --clean) clean=1 ;;
    --size) size=${2:?--size needs a value}; shift ;;
    --size=*) size=${1#--size=} ;;
    --gguf-input) input=gguf ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "q8_0-bench.sh: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$bin" ] || { echo "q8_0-bench.sh: one binary only" >&2; exit 2; }; bin=$1 ;;
  esac
  shift
done
[ -n "$bin" ] || bin=$repo/build/release/compressd
if [ ! -x "$bin" ]; then
  echo "q8_0-bench.sh: no compressd binary at $bin (build it, or pass its path)" >&2
  exit 2
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
for tool in curl jq sha256sum python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "q8_0-bench.sh: $tool is required" >&2; exit 2; }
done

cache=${COMPRESSD_BENCH_CACHE:-/tmp/compressd-bench-cache}
mkdir -p "$cache"
ext=$([ "$input" = gguf ] && echo gguf || echo safetensors)
model=$cache/llama-synth-$size-f16.$ext
work=$(mktemp -d /tmp/compressd-bench.XXXXXX)
spid="" sampler=""

cleanup() {
  local rc=$?
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null
  if [ -n "$spid" ] && kill -0 "$spid" 2>/dev/null; then
    kill -TERM "$spid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
  fi
  rm -rf "$work"
  if [ "$clean" = 1 ]; then rm -f "$model"; rmdir "$cache" 2>/dev/null || true; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.'"${3:-2}"'f", a / b; else print "-" }'; }
mbs() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / 1e6 / s; else print "-" }'; }
mb() { awk -v n="$1" 'BEGIN { printf "%.0f", n / 1e6 }'; }
die() { echo "q8_0-bench.sh: $*" >&2; exit 1; }
hz=$(getconf CLK_TCK)
# busy: CPU seconds the whole machine has spent outside idle and iowait since boot
busy() { awk -v hz="$hz" '$1 == "cpu" { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
# kids VAR: CPU seconds of this script's finished children (curl, jq, time + compressd ...)
# into VAR; `times` has to run in this shell, not in a $(...) subshell
kids() {
  times > "$work/times"
  printf -v "$1" '%s' "$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); s += p[1] * 60 + p[2] } printf "%.2f", s }' "$work/times")"
}
# pcpu PID: user + system CPU seconds of PID so far
pcpu() { awk -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"; }

# sample PID OUT PHASEFILE: every 0.05 s, the largest RssAnon and RssFile (kB) of PID per
# phase (the phase is the content of PHASEFILE); OUT gets "phase anon_kb file_kb" lines
# when PID is gone or the sampler is stopped.
sample() {
  local pid=$1 out=$2 phasefile=$3 k v phase
  declare -A anon=() file=()
  trap 'for p in "${!anon[@]}"; do echo "$p ${anon[$p]} ${file[$p]:-0}"; done > "$out"; exit 0' TERM
  while [ -r "/proc/$pid/status" ]; do
    read -r phase < "$phasefile" || phase=-
    while read -r k v _; do
      case $k in
        RssAnon:) [ "$v" -gt "${anon[$phase]:-0}" ] && anon[$phase]=$v ;;
        RssFile:) [ "$v" -gt "${file[$phase]:-0}" ] && file[$phase]=$v ;;
      esac
    done < "/proc/$pid/status" 2>/dev/null || true
    sleep 0.05
  done
  for p in "${!anon[@]}"; do echo "$p ${anon[$p]} ${file[$p]:-0}"; done > "$out"
}
peak() { awk -v p="$2" -v c="$3" '$1 == p || p == "*" { if ($c > m) m = $c } END { printf "%.0f", m / 1000 }' "$1"; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the model ----
if [ ! -s "$model" ]; then
  echo "generating $model ..."
  gen=$(now)
  args=(--size "$size"); [ "$input" = gguf ] && args+=(--gguf)
  python3 "$here/make-model.py" "${args[@]}" "$model"
  echo "  generated in $(sub "$(now)" "$gen") s"
else
  echo "reusing $model"
fi
model_bytes=$(stat -c %s "$model")
[ "$model_bytes" -ge 1000000000 ] || echo "note: the model is below 1 GB ($model_bytes bytes)"

# ---- baselines: warm read and copy ----
cat "$model" > /dev/null  # warm the page cache
t0=$(now); cat "$model" > /dev/null; t_cat=$(sub "$(now)" "$t0")
t0=$(now); cp "$model" "$work/copy"; t_cp=$(sub "$(now)" "$t0")
t0=$(now); sync "$work/copy"; t_cpsync=$(sub "$(now)" "$t0")
t_cpsync=$(awk -v a="$t_cp" -v b="$t_cpsync" 'BEGIN { printf "%.3f", a + b }')
rm -f "$work/copy"
cat "$model" > /dev/null  # the copy may have pushed some of the model out
t0=$(now); model_sha=$(sha256sum < "$model" | cut -d' ' -f1); t_sha=$(sub "$(now)" "$t0")

threads=$(nproc)
echo '{"steps": [{"op": "quantize", "type": "q8_0"}], "output": {"format": "gguf"}}' > "$work/recipe.json"

# ---- CLI ----
echo "CLI: compressd compress ($threads threads) ..."
echo cli > "$work/phase"
b0=$(busy); kids k0; t0=$(now)
/usr/bin/time -v -o "$work/cli.time" "$bin" compress --recipe "$work/recipe.json" \
  --threads "$threads" "$model" "$work/cli.gguf" 2> "$work/cli.err" &
tpid=$!
cpid=""
for _ in $(seq 200); do cpid=$(cat "/proc/$tpid/task/$tpid/children" 2>/dev/null || true); [ -n "$cpid" ] && break; sleep 0.005; done
[ -n "$cpid" ] && { sample "${cpid%% *}" "$work/cli.rss" "$work/phase" & sampler=$!; }
wait "$tpid" || { cat "$work/cli.err" >&2; die "compressd compress failed"; }
t_cli=$(sub "$(now)" "$t0"); cli_busy=$(sub "$(busy)" "$b0")
[ -n "$sampler" ] && { wait "$sampler" || true; sampler=""; }
kids k1; cli_kids=$(sub "$k1" "$k0")
[ -s "$work/cli.rss" ] || echo "- 0 0" > "$work/cli.rss"
cli_cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$work/cli.time")
cli_rss_kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/cli.time")
cli_out=$(stat -c %s "$work/cli.gguf")
cli_inner=$(jq -r .totals.seconds "$work/cli.gguf.report.json" | awk '{ printf "%.3f", $1 }')
cli_pre=$(sub "$t_cli" "$cli_inner")

# ---- service ----
echo "service: compressd serve ..."
mkdir -p "$work/data"
echo start > "$work/phase"
env -u COMPRESSD_CONFIG "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --workers "$threads" --log-level warn > "$work/serve.out" 2> "$work/serve.err" &
spid=$!
port=""
for _ in $(seq 300); do
  port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$work/serve.out")
  [ -n "$port" ] && break
  kill -0 "$spid" 2>/dev/null || { cat "$work/serve.err" >&2; die "compressd serve exited"; }
  sleep 0.1
done
[ -n "$port" ] || die "compressd serve did not start within 30 s"
sample "$spid" "$work/svc.rss" "$work/phase" &
sampler=$!
base=http://127.0.0.1:$port
c() { curl -sS --fail-with-body --max-time 300 "$@"; }

echo upload > "$work/phase"
svc_cpu0=$(pcpu "$spid"); b0=$(busy); kids k0
t0=$(now)
c -X POST -T "$model" -H 'Content-Type: application/octet-stream' -H 'Expect:' \
  "$base/v1/models?name=bench" > "$work/model.json" || die "upload failed: $(cat "$work/model.json")"
t_up=$(sub "$(now)" "$t0")
mid=$(jq -r .id "$work/model.json")
[ "$(jq -r .sha256 "$work/model.json")" = "$model_sha" ] ||
  die "the uploaded model's sha256 differs from the file's"

echo job > "$work/phase"
t0=$(now)
c -H 'Content-Type: application/json' "$base/v1/jobs" \
  -d "{\"model\": \"$mid\", \"steps\": [{\"op\": \"quantize\", \"type\": \"q8_0\"}], \"output\": {\"format\": \"gguf\"}}" \
  > "$work/job.json" || die "job submit failed: $(cat "$work/job.json")"
jid=$(jq -r .id "$work/job.json")
state=queued
for _ in $(seq 3000); do
  c "$base/v1/jobs/$jid" > "$work/job.json"
  state=$(jq -r .state "$work/job.json")
  case $state in succeeded|failed|canceled) break ;; esac
  sleep 0.1
done
t_job=$(sub "$(now)" "$t0")
[ "$state" = succeeded ] || die "job ended $state: $(jq -c .error "$work/job.json")"
job_server=$(
  python3 - "$work/job.json" <<'EOF'
import json, sys, datetime
j = json.load(open(sys.argv[1]))
p = lambda s: datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
print("%.3f" % (p(j["finished_at"]) - p(j["started_at"])).total_seconds())
EOF
)

echo download > "$work/phase"
t0=$(now)
c -o "$work/svc.gguf" "$base/v1/jobs/$jid/artifact"
t_down=$(sub "$(now)" "$t0")
c -o "$work/svc.report.json" "$base/v1/jobs/$jid/report"
svc_out=$(stat -c %s "$work/svc.gguf")
svc_tasks=$(jq -r .totals.seconds "$work/svc.report.json" | awk '{ printf "%.3f", $1 }')
svc_fin=$(sub "${job_server:-0}" "$svc_tasks")
t_svc=$(awk -v a="$t_up" -v b="$t_job" -v d="$t_down" 'BEGIN { printf "%.3f", a + b + d }')

kill "$sampler"; wait "$sampler" || true; sampler=""
svc_busy=$(sub "$(busy)" "$b0"); svc_cpu=$(sub "$(pcpu "$spid")" "$svc_cpu0"); kids k1; svc_kids=$(sub "$k1" "$k0")
svc_hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$spid/status")
kill -TERM "$spid"
svc_rc=0
for _ in $(seq 300); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
wait "$spid" || svc_rc=$?
spid=""

# ---- results ----
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
sha_cli=$(sha256sum < "$work/cli.gguf" | cut -d' ' -f1)
sha_svc=$(sha256sum < "$work/svc.gguf" | cut -d' ' -f1)
sha_job=$(jq -r .artifact.sha256 "$work/job.json")
identical=no
[ "$sha_cli" = "$sha_svc" ] && [ "$sha_svc" = "$sha_job" ] && identical=yes

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/^MemTotal:/ { printf "%.0f GB", $2 / 1e6 }' /proc/meminfo)
fs=$(df -T "$work" | awk 'NR == 2 { print $2 }')
tot=$(jq -r '.totals | "bpw \(.bpw * 1000 | round / 1000), tensors \(.tensors_transformed)/\(.tensors) quantized"' "$work/cli.gguf.report.json")
rel=$(jq -r '[.tensors[] | select(.rel_l2 != null and .rel_l2 > 0) | .rel_l2] | if length > 0 then "\(min) \(max)" else "" end' "$work/cli.gguf.report.json" |
  awk 'NF == 2 { printf "rel_l2 %.5f..%.5f", $1, $2 }')
model_mb=$(mb "$model_bytes")

row() { printf '%-22s %8s %8s %12s %9s %7s %9s %9s\n' "$@"; }
echo
echo "compressd Q8_0 benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine:  $threads cores ($cpu), $mem RAM, $fs on $(df "$work" | awk 'NR == 2 { print $6 }'), kernel $(uname -r)"
echo "load:     1/5/15-min load average $load_start at the start, $load_end at the end"
echo "binary:   $bin ($("$bin" version 2>/dev/null || echo '?'))"
echo "model:    $model ($input F16, $model_bytes bytes)"
echo "output:   GGUF Q8_0, $tot, $rel"
echo
row "step" "wall s" "MB/s" "output B" "peak RSS" "RSS/in" "peak anon" "peak file"
row "" "" "" "" "MB" "" "MB" "MB"
row "cat (warm)" "$t_cat" "$(mbs "$model_bytes" "$t_cat")" "-" "-" "-" "-" "-"
row "cp" "$t_cp" "$(mbs "$model_bytes" "$t_cp")" "$model_bytes" "-" "-" "-" "-"
row "cp + fsync" "$t_cpsync" "$(mbs "$model_bytes" "$t_cpsync")" "$model_bytes" "-" "-" "-" "-"
row "sha256sum" "$t_sha" "$(mbs "$model_bytes" "$t_sha")" "-" "-" "-" "-" "-"
row "CLI compress" "$t_cli" "$(mbs "$model_bytes" "$t_cli")" "$cli_out" "$(mb "$((cli_rss_kb * 1000))")" \
  "$(div "$cli_rss_kb" "$((model_bytes / 1000))")" "$(peak "$work/cli.rss" '*' 2)" "$(peak "$work/cli.rss" '*' 3)"
row "  open + sha256 input" "$cli_pre" "$(mbs "$model_bytes" "$cli_pre")" "" "" "" "" ""
row "  pipeline" "$cli_inner" "$(mbs "$model_bytes" "$cli_inner")" "" "" "" "" ""
row "service total" "$t_svc" "$(mbs "$model_bytes" "$t_svc")" "$svc_out" "$(mb "$((svc_hwm_kb * 1000))")" \
  "$(div "$svc_hwm_kb" "$((model_bytes / 1000))")" "$(peak "$work/svc.rss" '*' 2)" "$(peak "$work/svc.rss" '*' 3)"
row "  upload" "$t_up" "$(mbs "$model_bytes" "$t_up")" "" "" "" "$(peak "$work/svc.rss" upload 2)" "$(peak "$work/svc.rss" upload 3)"
row "  job" "$t_job" "$(mbs "$model_bytes" "$t_job")" "$svc_out" "" "" "$(peak "$work/svc.rss" job 2)" "$(peak "$work/svc.rss" job 3)"
row "    server-side run" "${job_server:--}" "$(mbs "$model_bytes" "${job_server:-0}")" "" "" "" "" ""
row "      tasks" "$svc_tasks" "$(mbs "$model_bytes" "$svc_tasks")" "" "" "" "" ""
row "      commit artifact" "$svc_fin" "" "" "" "" "" ""
row "  download" "$t_down" "$(mbs "$svc_out" "$t_down")*" "" "" "" "$(peak "$work/svc.rss" download 2)" "$(peak "$work/svc.rss" download 3)"
echo
echo "MB/s: input bytes (10^6) per second; * the download's is artifact bytes per second."
echo "CLI: \"pipeline\" is the report's totals.seconds (write, fsync, rename); before it the CLI"
echo "hashes the whole input for compressd.source_sha256. Service: \"server-side run\" is the job's"
echo "finished_at - started_at; \"tasks\" its report's totals.seconds; \"commit artifact\" the rest"
echo "(re-reading the artifact for its sha256, fsync, the report blob, the database update)."
echo "peak RSS: CLI ru_maxrss (/usr/bin/time -v), daemon VmHWM; both count the resident pages of"
echo "the mmapped input. peak anon / peak file: RssAnon / RssFile sampled every 0.05 s."
echo
echo "ratios:   CLI / cp = $(div "$t_cli" "$t_cp"), CLI / (cp + fsync) = $(div "$t_cli" "$t_cpsync"),"
echo "          service / (cp + fsync) = $(div "$t_svc" "$t_cpsync"), job / (cp + fsync) = $(div "$t_job" "$t_cpsync"),"
echo "          CLI / cat = $(div "$t_cli" "$t_cat" 1)"
echo "memory:   peak RSS / model: CLI $(div "$cli_rss_kb" "$((model_bytes / 1000))"), daemon $(div "$svc_hwm_kb" "$((model_bytes / 1000))");" \
  "peak anonymous / model: CLI $(div "$(peak "$work/cli.rss" '*' 2)" "$model_mb" 3), daemon $(div "$(peak "$work/svc.rss" '*' 2)" "$model_mb" 3)"
echo "artifacts: CLI $sha_cli"
echo "           svc $sha_svc"
echo "           byte-identical: $identical"
other_cli=$(awk -v a="$cli_busy" -v b="$cli_kids" 'BEGIN { o = a - b; printf "%.1f", o < 0 ? 0 : o }')
other_svc=$(awk -v a="$svc_busy" -v b="$svc_cpu" -v c="$svc_kids" 'BEGIN { o = a - b - c; printf "%.1f", o < 0 ? 0 : o }')
other=$(awk -v a="$other_cli" -v b="$other_svc" 'BEGIN { printf "%.1f", a + b }')
echo "cpu:      CLI: compressd $cli_cpu CPU-s in $t_cli s wall; other processes $other_cli CPU-s"
echo "          service, upload to download: compressd $svc_cpu CPU-s, curl and this script"
echo "          $svc_kids CPU-s in $t_svc s wall; other processes $other_svc CPU-s"
# kernel work on our behalf (writeback, loopback TCP) shows up here too: about 10 % of
# compressd's CPU time on an idle machine
awk -v o="$other" -v a="$cli_cpu" -v b="$svc_cpu" 'BEGIN { exit !(o > 0.25 * (a + b)) }' &&
  echo "warning: other processes used about $other CPU-s during the measured runs: figures are pessimistic"
[ "$svc_rc" = 0 ] || echo "warning: compressd serve exited with status $svc_rc after SIGTERM"
[ "$identical" = yes ] || exit 1
