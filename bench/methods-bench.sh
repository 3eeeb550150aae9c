#!/bin/sh
# methods-bench: the whole-tensor methods' kernels and whole-model runs.
#
# usage: bench/methods-bench.sh [BUILD_DIR] [--quick]
#   BUILD_DIR  a configured build tree of this source (default build/release, configured and
#              built when missing); methods-bench.c is compiled against its libczcore.a, the
#              whole-model runs use its compressd.
#   --quick    skip the 4096 x 11008 SVD (about 5 minutes of sgesdd on one core)
#
# 1. kernels (one thread, as compressd runs OpenBLAS): full SVD (sgesdd) vs randomized SVD of
#    rank 256 on 4096 x 4096 and 4096 x 11008 (time, error against the Eckart-Young optimum);
#    the 4-bit and 8-bit codebooks of a 4096 x 4096 F16 tensor, exact DP vs Lloyd.
# 2. whole model, 2 threads: the 1.08 GB synthetic llama model of bench/make-model.py through
#    prune 2:4, magnitude 50 %, 4-bit palettes per 32 channels and rank-256 rSVD (wall time,
#    GB/s of input).
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
BUILD=build/release
QUICK=0
for a in "$@"; do
  case $a in
    --quick) QUICK=1 ;;
    *) BUILD=$a ;;
  esac
done
if [ ! -x "$BUILD/compressd" ]; then
  [ -x configure ] || autoreconf -fi >/dev/null
  mkdir -p "$BUILD"
  [ -f "$BUILD/Makefile" ] || (cd "$BUILD" && "$top/configure" -q)
  make -C "$BUILD" -j"$(nproc)" -s compressd
fi
DIR=${METHODS_BENCH_DIR:-/tmp/compressd-methods-bench}
mkdir -p "$DIR"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -I"$top/core" -I"$top/daemon" bench/methods-bench.c "$BUILD/libczdaemon.a" "$BUILD/libczcore.a" \
  $(pkg-config --libs jansson lapacke openblas) -lpthread -lm -o "$DIR/methods-bench"

echo "== kernels"
"$DIR/methods-bench" svd 4096 4096 256
[ "$QUICK" = 1 ] || "$DIR/methods-bench" svd 4096 11008 256
"$DIR/methods-bench" kmeans 4096 4096 4
"$DIR/methods-bench" kmeans 4096 4096 8

echo "== whole model, 2 threads"
MODEL=$DIR/model.safetensors
[ -s "$MODEL" ] || python3 bench/make-model.py "$MODEL" >/dev/null
bytes=$(wc -c <"$MODEL")
run() {
  printf '%s\n' "$2" >"$DIR/recipe.json"
  t0=$(date +%s.%N)
  "$BUILD/compressd" compress --recipe "$DIR/recipe.json" "$MODEL" "$DIR/out.safetensors" \
    --threads 2 2>/dev/null
  t1=$(date +%s.%N)
  python3 - "$1" "$t0" "$t1" "$bytes" "$DIR/out.safetensors" <<'PYEOF'
import json, math, os, sys
name, t0, t1, size, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
r = json.load(open(out + ".report.json"))
n = s = 0
for t in r["tensors"]:
    k = 1
    for d in t["shape"]:
        k *= d
    n += k
    s += k * (t["rel_l2"] or 0) ** 2
print("%-34s %7.1f s  %5.2f GB/s  %13s bytes out  RMS rel. error %.4f"
      % (name, t1 - t0, size / (t1 - t0) / 1e9, format(os.path.getsize(out), ","), math.sqrt(s / n)))
PYEOF
}
run "prune 2:4" '{"steps": [{"op": "prune", "method": "nm"}]}'
run "prune magnitude 50 %" '{"steps": [{"op": "prune", "sparsity": 0.5}]}'
run "prune magnitude 50 %, global" '{"steps": [{"op": "prune", "sparsity": 0.5, "scope": "global"}]}'
run "palettize 4-bit, groups of 32" '{"steps": [{"op": "palettize", "bits": 4, "granularity": "group", "group_size": 32}]}'
run "factorize rsvd rank 256" '{"steps": [{"op": "factorize", "method": "rsvd", "rank": 256}]}'
