#!/usr/bin/env bash
# quant-daemon-bench.sh: the whole-model presets of quant-model-bench.sh as jobs of a running
# daemon (the service path: upload once, POST a job, poll it), on the same llama-shaped F16
# GGUF, --workers 2: per preset the job's time from claim to success (started_at ..
# finished_at: the pipeline, writing the artifact, hashing it into the blob store, fsync,
# the report), the pipeline's own time (the report's totals.seconds), the daemon's peak RSS,
# and the ratio to the llama-quantize times quoted in issue 4 (not measured here).
#
# usage: bench/quant-daemon-bench.sh [COMPRESSD] [--runs N] [--size BYTES]
#                                    [--presets "Q8_0 Q4_0 Q4_K_M Q6_K"]
#   COMPRESSD   the binary (default build/release/compressd; nothing is built)
#   --runs N    jobs per preset, the fastest is reported (default 3)
#   --size      the model of bench/make-model.py (default 1.67G, kept in
#               $COMPRESSD_BENCH_CACHE, /tmp/compressd-bench-cache, as quant-model-bench.sh)
# The daemon listens on 127.0.0.1 (a free port) with a data directory under $TMPDIR that is
# removed at the end. The model is read into the page cache before the jobs, as the
# uploaded blob is after an upload.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

bin="" runs=3 size=1.67G presets="Q8_0 Q4_0 Q4_K_M Q6_K"
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=${2:?--runs needs a value}; shift ;;
    --size) size=${2:?--size needs a value}; shift ;;
    --presets) presets=${2:?--presets needs a value}; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "quant-daemon-bench.sh: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$bin" ] || { echo "quant-daemon-bench.sh: one binary only" >&2; exit 2; }; bin=$1 ;;
  esac
  shift
done
[ -n "$bin" ] || bin=$repo/build/release/compressd
[ -x "$bin" ] || { echo "quant-daemon-bench.sh: no compressd binary at $bin" >&2; exit 2; }
for tool in curl jq python3; do
  command -v "$tool" >/dev/null || { echo "quant-daemon-bench.sh: $tool is required" >&2; exit 2; }
done

cache=${COMPRESSD_BENCH_CACHE:-/tmp/compressd-bench-cache}
mkdir -p "$cache"
model=$cache/llama-synth-$size-f16.gguf
if [ ! -s "$model" ]; then
  echo "generating $model ..." >&2
  python3 "$here/make-model.py" --size "$size" --gguf "$model.tmp" >&2
  mv "$model.tmp" "$model"
fi
model_bytes=$(stat -c %s "$model")

work=$(mktemp -d "${TMPDIR:-/tmp}/quant-daemon-bench.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --workers 2 > "$work/log" 2>&1 &
pid=$!
url=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$url/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$url/readyz" >/dev/null || { cat "$work/log" >&2; echo "quant-daemon-bench.sh: the daemon did not start" >&2; exit 1; }

cat "$model" > /dev/null  # from the page cache, as quant-model-bench.sh reads it
t0=$(date +%s.%N)
curl -sf -X POST -T "$model" -H 'Content-Type: application/octet-stream' \
  "$url/v1/models?name=bench" > "$work/model.json" \
  || { echo "quant-daemon-bench.sh: upload failed" >&2; exit 1; }
t1=$(date +%s.%N)
mid=$(jq -r .id "$work/model.json")
blob=$(find "$work/data" -type f -size +$((model_bytes / 2))c | head -1)
cat "$blob" > /dev/null

# llama-quantize, 1.67 GB F16 model, 2 threads: issue 4's figures, quoted, not measured here
declare -A LQ=([Q8_0]=5.5 [Q4_0]=5 [Q4_K_M]=33 [Q6_K]=19)
LQ_BYTES=1670000000

secs() { python3 -c 'import sys, datetime as d
f = lambda s: d.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
print("%.3f" % (f(sys.argv[2]) - f(sys.argv[1])).total_seconds())' "$1" "$2"; }

echo "compressd whole-model quantization as daemon jobs, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine:  $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GB RAM"
echo "binary:   $bin ($("$bin" version 2>/dev/null | head -1)), serve --workers 2"
echo "model:    $model ($model_bytes bytes, F16 GGUF); upload $(awk -v a="$t0" -v b="$t1" -v n="$model_bytes" 'BEGIN{printf "%.2f s, %.0f MB/s", b-a, n/(b-a)/1e6}') (SHA-256 and validation as it streams)"
echo "runs:     best of $runs jobs per preset; times scaled to ${LQ_BYTES} bytes: x $(
  awk -v a=$LQ_BYTES -v b="$model_bytes" 'BEGIN{printf "%.4f", a/b}')"
echo
printf '%-7s %7s %9s %7s %12s | %7s %6s %6s\n' preset job_s scaled_s pipe_s artifact_B "llama-q" ratio load1
for p in $presets; do
  best="" best_pipe="" size_out=""
  load=$(cut -d' ' -f1 /proc/loadavg)
  for ((r = 1; r <= runs; r++)); do
    jid=$(curl -sf -X POST -H 'Content-Type: application/json' \
      -d "{\"model\": \"$mid\", \"steps\": [{\"op\": \"quantize\", \"preset\": \"$p\"}]}" \
      "$url/v1/jobs" | jq -r .id)
    state=""
    for _ in $(seq 6000); do
      curl -sf "$url/v1/jobs/$jid?wait=30s" > "$work/job.json" || true
      state=$(jq -r .state "$work/job.json")
      case $state in succeeded|failed|canceled) break ;; esac
    done
    [ "$state" = succeeded ] || { cat "$work/job.json" >&2; echo "quant-daemon-bench.sh: $p $state" >&2; exit 1; }
    job_s=$(secs "$(jq -r .started_at "$work/job.json")" "$(jq -r .finished_at "$work/job.json")")
    pipe=$(curl -sf "$url/v1/jobs/$jid/report" | jq -r .totals.seconds)
    size_out=$(jq -r .artifact.bytes "$work/job.json")
    if [ -z "$best" ] || awk -v a="$job_s" -v b="$best" 'BEGIN{exit !(a<b)}'; then
      best=$job_s best_pipe=$pipe
    fi
    curl -sf -X DELETE "$url/v1/jobs/$jid" >/dev/null || true  # its artifact leaves the disk
  done
  scaled=$(awk -v w="$best" -v a=$LQ_BYTES -v b="$model_bytes" 'BEGIN{printf "%.2f", w*a/b}')
  ratio=$(awk -v s="$scaled" -v l="${LQ[$p]:-0}" 'BEGIN{if (l>0) printf "%.2f", s/l; else print "-"}')
  printf '%-7s %7.2f %9s %7.2f %12s | %7s %6s %6s\n' "$p" "$best" "$scaled" "$best_pipe" \
    "$size_out" "${LQ[$p]:--}" "$ratio" "$load"
done
rss=$(awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$pid/status")
echo
echo "job_s: started_at .. finished_at of the fastest job (claim to success: pipeline, artifact"
echo "  hashed into the blob store, fsync, report); scaled_s: job_s x ${LQ_BYTES} / model bytes;"
echo "  pipe_s: that job's report totals.seconds; artifact_B: its size."
echo "llama-q: llama-quantize seconds quoted in issue 4 (not measured here); ratio = scaled_s / llama-q."
echo "daemon peak RSS (VmHWM) over all jobs and the upload: ${rss} MB"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
