#!/bin/sh
# schemes-bench: the safetensors quantization schemes on the same weights: RTN against HQQ
# (relative error and HQQ's own objective) for int4 g128, int3 g64 and int2 g32, and the size
# and error of every scheme. Printed figures, not a timed test.
#
# usage: [HQQ_ONLY=1] bench/schemes-bench.sh [BUILD_DIR] [MODEL]  (HQQ_ONLY: the RTN/HQQ rows only)
#   BUILD_DIR  a configured build tree (default build/release, configured and built when
#              missing); its compressd runs the recipes.
#   MODEL      a GGUF or safetensors model (default tests/data/tiny-llama-f16.gguf).
#
# Per recipe: file bytes, bits per weight over the whole file, the RMS relative error (the
# per-tensor rel_l2 averaged in squares, weighted by elements; copied tensors count 0) and the
# worst tensor's rel_l2, from the report; for the RTN/HQQ pairs also HQQ's objective
# (sum |W - W'|^0.7 over the quantized matrices), recomputed from `compressd decompress`.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
BUILD=${1:-build/release}
MODEL=${2:-tests/data/tiny-llama-f16.gguf}
if [ ! -x "$BUILD/compressd" ]; then
  [ -x configure ] || autoreconf -fi >/dev/null
  mkdir -p "$BUILD"
  [ -f "$BUILD/Makefile" ] || (cd "$BUILD" && "$top/configure" -q)
  make -C "$BUILD" -j2 compressd >/dev/null
fi
CZ=$BUILD/compressd
W=$(mktemp -d "${TMPDIR:-/tmp}/schemes-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT

# run NAME STEP: compress, print the figures; with OBJ=1 also HQQ's objective
run() {
  printf '{"steps": [%s], "output": {"format": "safetensors"}}' "$2" >"$W/r.json"
  start=$(date +%s.%N)
  "$CZ" compress --recipe "$W/r.json" "$MODEL" "$W/a.safetensors" --threads 2 >/dev/null 2>&1
  end=$(date +%s.%N)
  obj=""
  if [ "${OBJ:-0}" = 1 ]; then
    "$CZ" decompress "$W/a.safetensors" "$W/d.safetensors" >/dev/null 2>&1
    obj=$(python3 - "$MODEL" "$W/d.safetensors" "$W/a.safetensors.report.json" <<'EOF'
import json, sys
sys.path.insert(0, "tests/tools")
import gguf_read as g
mi, md = g.load(sys.argv[1]), g.load(sys.argv[2])
rep = json.load(open(sys.argv[3]))
s = 0.0
for e in rep["tensors"]:
    if e.get("layout"):
        x, y = g.decode(mi, e["name"]), g.decode(md, e["name"])
        s += sum(abs(a - b) ** 0.7 for a, b in zip(x, y))
print("%.1f" % s)
EOF
)
  fi
  jq -r --arg name "$1" --arg t "$(echo "$end - $start" | bc)" --arg obj "$obj" '
    [.tensors[] | {n: (.shape | reduce .[] as $d (1; . * $d)), r: (.rel_l2 // 0)}] as $ts
    | ($ts | map(.n) | add) as $n
    | "\($name)\t\(.totals.file_bytes_out)\t\(.totals.file_bytes_out * 8 / $n * 100 | round / 100)\t\(($ts | map(.n * .r * .r) | add) / $n | sqrt * 100000 | round / 100000)\t\([.tensors[].rel_l2 // 0] | max * 10000 | round / 10000)\t\($obj)\t\($t | tonumber * 100 | round / 100)"' \
    "$W/a.safetensors.report.json"
}

printf '# model: %s\n' "$MODEL"
printf 'recipe\tfile bytes\tbpw\tRMS rel err\tworst rel_l2\tHQQ objective\tseconds\n'
OBJ=1 run "int4 g128 asym RTN" '{"op": "quantize", "scheme": "int4", "group_size": 128, "symmetric": false}'
OBJ=1 run "int4 g128 HQQ" '{"op": "quantize", "scheme": "int4", "group_size": 128, "hqq": true}'
OBJ=1 run "int3 g64 asym RTN" '{"op": "quantize", "scheme": "int3", "group_size": 64, "symmetric": false}'
OBJ=1 run "int3 g64 HQQ" '{"op": "quantize", "scheme": "int3", "group_size": 64, "hqq": true}'
OBJ=1 run "int2 g32 asym RTN" '{"op": "quantize", "scheme": "int2", "group_size": 32, "symmetric": false}'
OBJ=1 run "int2 g32 HQQ" '{"op": "quantize", "scheme": "int2", "group_size": 32, "hqq": true}'
[ -n "${HQQ_ONLY:-}" ] && exit 0
run "int8 channel sym" '{"op": "quantize", "scheme": "int8", "granularity": "channel"}'
run "int8 g128 sym" '{"op": "quantize", "scheme": "int8", "group_size": 128}'
run "int4 g128 sym" '{"op": "quantize", "scheme": "int4", "group_size": 128}'
run "int4 g64 sym" '{"op": "quantize", "scheme": "int4", "group_size": 64}'
run "int4 g32 asym" '{"op": "quantize", "scheme": "int4", "group_size": 32, "symmetric": false}'
run "nf4 block 64" '{"op": "quantize", "scheme": "nf4"}'
run "nf4 block 64 + DQ" '{"op": "quantize", "scheme": "nf4", "double_quant": true}'
run "fp8_e4m3 channel" '{"op": "quantize", "scheme": "fp8_e4m3"}'
run "fp8_e4m3 128x128" '{"op": "quantize", "scheme": "fp8_e4m3", "block": [128, 128]}'
