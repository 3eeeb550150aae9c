#!/usr/bin/env bash
# quant-model-bench.sh: whole-model quantization with the CLI on a llama-shaped F16 GGUF, for
# llama-quantize's Q8_0, Q4_0, Q4_K_M and Q6_K (compressd's presets of the same mixtures),
# 2 threads: wall time, the pipeline's own time, peak RSS and output size, best of N runs,
# next to the llama-quantize figures quoted in issue 4 (NOT measured here: llama.cpp is not
# installable on this machine), with our times scaled to the issue's 1.67 GB model.
#
# usage: bench/quant-model-bench.sh [COMPRESSD] [--runs N] [--size BYTES] [--clean]
#                                   [--presets "Q8_0 Q4_0 Q4_K_M Q6_K"]
#   COMPRESSD   the binary (default build/release/compressd of this tree; nothing is built)
#   --runs N    runs per preset, the best (least disturbed) is reported (default 2)
#   --size      model size for bench/make-model.py (default 1.67G: 14 layers, 1.70 GB)
#   --clean     delete the generated model at the end (kept by default in
#               $COMPRESSD_BENCH_CACHE, /tmp/compressd-bench-cache, for the next run)
#
# Per run: `/usr/bin/time -v compressd compress --threads 2 --recipe {"preset": P} IN OUT`, once
# as is (the CLI hashes the input beside the pipeline) and once with --input-sha256 (given).
#   wall       the whole command (it hashes the input with SHA-256 on a thread of its own
#              while the pipeline runs, since 261aae9; before that, first)
#   cpu        its user + system CPU time (what the run costs, whatever else the cores run)
#   pipeline   the report's totals.seconds: F16 -> F32, quantize, error statistics, write,
#              waiting for the input's SHA-256, fsync
#   peak RSS   ru_maxrss; the input is mmapped and released as it is consumed
#   output     the artifact's size in bytes
# The 1/5/15-minute load averages are printed before and after each preset: the machine's 2
# cores are shared, so compare only runs taken at a low load.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

bin="" runs=2 size=1.67G clean=0 presets="Q8_0 Q4_0 Q4_K_M Q6_K"
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=${2:?--runs needs a value}; shift ;;
    --size) size=${2:?--size needs a value}; shift ;;
    --presets) presets=${2:?--presets needs a value}; shift ;;
    --clean) clean=1 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "quant-model-bench.sh: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$bin" ] || { echo "quant-model-bench.sh: one binary only" >&2; exit 2; }; bin=$1 ;;
  esac
  shift
done
[ -n "$bin" ] || bin=$repo/build/release/compressd
[ -x "$bin" ] || { echo "quant-model-bench.sh: no compressd binary at $bin" >&2; exit 2; }
for tool in jq python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "quant-model-bench.sh: $tool is required" >&2; exit 2; }
done

cache=${COMPRESSD_BENCH_CACHE:-/tmp/compressd-bench-cache}
mkdir -p "$cache"
model=$cache/llama-synth-$size-f16.gguf
work=$(mktemp -d "${TMPDIR:-/tmp}/quant-model-bench.XXXXXX")
cleanup() {
  rm -rf "$work"
  if [ "$clean" = 1 ]; then rm -f "$model"; fi
}
trap cleanup EXIT

if [ ! -s "$model" ]; then
  echo "generating $model ..." >&2
  python3 "$here/make-model.py" --size "$size" --gguf "$model.tmp" >&2
  mv "$model.tmp" "$model"
fi
model_bytes=$(stat -c %s "$model")
cat "$model" > /dev/null  # warm the page cache: every run reads it from memory
# The "given" rows pass the input's digest with --input-sha256, as a pipeline that knows it
# (a model registry, Hugging Face's LFS object id) would: the CLI then does not hash the
# input, like llama-quantize, which hashes nothing. Computed here once, outside the timing.
model_sha=$(sha256sum "$model" | cut -d' ' -f1)

# llama-quantize, 1.67 GB F16 model, 2 threads, "this kind of machine": issue 4's figures,
# quoted, not measured here (wall seconds; peak RSS 655 MB for all four).
declare -A LQ=([Q8_0]=5.5 [Q4_0]=5 [Q4_K_M]=33 [Q6_K]=19)
LQ_BYTES=1670000000
LQ_RSS_MB=655

echo "compressd whole-model quantization, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine:  $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GB RAM"
echo "binary:   $bin ($("$bin" version 2>/dev/null | head -1))"
echo "model:    $model ($model_bytes bytes, F16 GGUF)"
echo "runs:     best of $runs per preset, --threads 2; times scaled to ${LQ_BYTES} bytes: x $(
  awk -v a=$LQ_BYTES -v b="$model_bytes" 'BEGIN{printf "%.4f", a/b}')"
echo
printf '%-7s %-8s %7s %9s %7s %6s %7s %11s %5s | %7s %6s %6s\n' preset sha256 wall_s scaled_s \
  pipe_s cpu_s "RSS_MB" output_B bpw "llama-q" "ratio" "load1"
for p in $presets; do
for mode in hashed given; do
  hash_arg=()
  if [ "$mode" = given ]; then hash_arg=(--input-sha256 "$model_sha"); fi
  best_wall="" best_pipe="" best_rss="" best_cpu="" out_bytes="" bpw=""
  printf '{"steps": [{"op": "quantize", "preset": "%s"}], "output": {"format": "gguf"}}\n' "$p" \
    > "$work/recipe.json"
  load=$(cut -d' ' -f1 /proc/loadavg)
  for ((r = 1; r <= runs; r++)); do
    rm -f "$work/out.gguf" "$work/report.json"
    /usr/bin/time -v -o "$work/time.txt" "$bin" compress --threads 2 "${hash_arg[@]}" --recipe "$work/recipe.json" \
      --report "$work/report.json" "$model" "$work/out.gguf" > "$work/cli.out" 2>&1 \
      || { cat "$work/cli.out" >&2; echo "quant-model-bench.sh: $p failed" >&2; exit 1; }
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$work/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/{printf "%.0f", $2/1024}' "$work/time.txt")
    pipe=$(jq -r '.totals.seconds' "$work/report.json")
    cpu=$(awk -F': ' '/User time|System time/{s+=$2} END{printf "%.2f", s}' "$work/time.txt")
    if [ -z "$best_wall" ] || awk -v a="$wall" -v b="$best_wall" 'BEGIN{exit !(a<b)}'; then
      best_wall=$wall best_pipe=$pipe best_rss=$rss best_cpu=$cpu
    fi
    out_bytes=$(stat -c %s "$work/out.gguf")
    bpw=$(awk -v o="$out_bytes" -v m="$model_bytes" 'BEGIN{printf "%.2f", o*16/m}')
  done
  scaled=$(awk -v w="$best_wall" -v a=$LQ_BYTES -v b="$model_bytes" 'BEGIN{printf "%.2f", w*a/b}')
  ratio=$(awk -v s="$scaled" -v l="${LQ[$p]:-0}" 'BEGIN{if (l>0) printf "%.2f", s/l; else print "-"}')
  printf '%-7s %-8s %7.2f %9s %7.2f %6s %7s %11s %5s | %7s %6s %6s\n' "$p" "$mode" "$best_wall" \
    "$scaled" "$best_pipe" "$best_cpu" "$best_rss" "$out_bytes" "$bpw" "${LQ[$p]:--}" "$ratio" "$load"
  got_sha=$(jq -r '.input.sha256' "$work/report.json")
  [ "$got_sha" = "$model_sha" ] || { echo "quant-model-bench.sh: report sha256 $got_sha" >&2; exit 1; }
done
done
echo
echo "sha256: hashed = the CLI computes the input's SHA-256 on a thread beside the pipeline (the"
echo "  default); given = --input-sha256 passes the known digest, nothing is hashed (as llama-quantize)."
echo "wall_s: best wall time of the CLI; scaled_s: wall_s"
echo "  x ${LQ_BYTES} / model bytes; pipe_s: the report's totals.seconds (up to the hash's end);"
echo "  cpu_s: user + system CPU seconds of that run (both threads; less sensitive to load);"
echo "  RSS_MB: peak resident set (ru_maxrss); bpw: output bits per input F16 weight."
echo "llama-q: llama-quantize wall seconds on a 1.67 GB F16 model with 2 threads as quoted in"
echo "  issue 4 (peak RSS ${LQ_RSS_MB} MB), not measured here; ratio = scaled_s / llama-q (the"
echo "  issue's target is 0.33 or less). load1: 1-minute load average before the preset's runs."
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
