#!/bin/sh
# test_decompress: `compressd decompress IN OUT` turns artifacts of every kind back into dense
# safetensors: GGUF block types, quantize.int8 pairs, and the whole-tensor layouts (lowrank,
# select_rows/select_cols, int8, palette, sparse-bitmask, sparse-24-bitmask). Every output
# is checked with the independent reader: the input's tensor names and shapes, and for every
# tensor the relative error against the input equal to the one the compress report gave
# (which compressd computed from its own decoding when it wrote the artifact).
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

IN=$CZ_DATA/tiny-llama-f16.gguf
W=$T_TMP/w
mkdir -p "$W"

# check_dense DENSE REPORT: names, shapes and per-tensor relative error against IN
check_dense() {
  "$PY" - "$IN" "$1" "$2" <<'EOF'
import json, math, os, sys
sys.path.insert(0, os.environ["CZ_TOOLS"])
import gguf_read as g
mi, md = g.load(sys.argv[1]), g.load(sys.argv[2])
report = {t["name"]: t for t in json.load(open(sys.argv[3]))["tensors"]}
bad = []
if sorted(t.name for t in mi.tensors) != sorted(t.name for t in md.tensors):
    bad.append("tensor names differ")
dtypes = set()
shape = {t.name: list(t.ne) for t in md.tensors}
for t in mi.tensors:
    if t.name not in shape:
        continue
    if shape[t.name] != list(t.ne):
        bad.append("%s: shape %s, input %s" % (t.name, shape[t.name], list(t.ne)))
        continue
    x, y = g.decode(mi, t.name), g.decode(md, t.name)
    num = sum((a - b) ** 2 for a, b in zip(x, y))
    den = sum(a * a for a in x)
    rel = math.sqrt(num / den) if den else 0.0
    want = report[t.name]["rel_l2"] or 0.0
    if abs(rel - want) > 1e-5 * max(want, 1e-3):
        bad.append("%s: relative error %.9g, the report says %.9g" % (t.name, rel, want))
for t in md.tensors:
    dtypes.add(t.type if hasattr(t, "type") else "?")
print("%d tensors, dtypes %s, %d problems" % (len(md.tensors), ",".join(sorted(map(str, dtypes))), len(bad)))
for b in bad[:10]:
    print(b)
sys.exit(1 if bad else 0)
EOF
}
export CZ_TOOLS

# case NAME EXT RECIPE: compress IN with RECIPE, decompress, check
case_() {
  printf '%s' "$3" >"$W/$1.json"
  if ! "$CZ_BIN" compress --recipe "$W/$1.json" "$IN" "$W/$1.$2" 2>"$W/$1.err"; then
    not_ok "$1: compress"
    diag "$(cat "$W/$1.err")"
    return
  fi
  if ! "$CZ_BIN" decompress "$W/$1.$2" "$W/$1.dense.safetensors" 2>"$W/$1.derr"; then
    not_ok "$1: decompress exits 0"
    diag "$(cat "$W/$1.derr")"
    return
  fi
  if out=$(check_dense "$W/$1.dense.safetensors" "$W/$1.$2.report.json" 2>&1); then
    ok "$1: dense, every tensor with the error the report gave"
  else
    not_ok "$1: dense, every tensor with the error the report gave"
  fi
  diag "$out"
}

case_ q4_k_m gguf '{"steps": [{"op": "quantize", "preset": "Q4_K_M"}]}'
case_ int8 safetensors '{"steps": [{"op": "quantize", "type": "int8"}], "output": {"format": "safetensors"}}'
case_ lowrank gguf '{"steps": [{"op": "factorize", "method": "rsvd", "rank": 64, "rank_multiple": 32, "include": ["blk.0.attn_q.weight", "blk.0.ffn_down.weight"]}, {"op": "quantize", "type": "q8_0"}], "output": {"format": "gguf"}}'
case_ palette safetensors '{"steps": [{"op": "palettize", "bits": 4, "granularity": "group", "group_size": 32, "include": ["blk.0.*"]}], "output": {"format": "safetensors"}}'
case_ sparse safetensors '{"steps": [{"op": "prune", "sparsity": 0.5, "layout": "sparse-bitmask", "include": ["blk.1.*"]}], "output": {"format": "safetensors"}}'
case_ sparse24 safetensors '{"steps": [{"op": "prune", "method": "nm", "n": 2, "m": 4, "layout": "sparse-24-bitmask", "include": ["blk.0.ffn_up.weight"]}], "output": {"format": "safetensors"}}'
case_ rows_int8 safetensors '{"steps": [{"op": "prune", "method": "structured", "sparsity": 0.25, "include": ["blk.2.ffn_up.weight"]}, {"op": "quantize", "type": "int8"}], "output": {"format": "safetensors"}}'
case_ cols gguf '{"steps": [{"op": "prune", "method": "structured", "axis": "cols", "sparsity": 0.25, "include": ["blk.3.ffn_down.weight"]}], "output": {"format": "gguf"}}'

# F16 output
"$CZ_BIN" decompress "$W/q4_k_m.gguf" "$W/half.safetensors" --dtype f16 2>/dev/null
is "--dtype f16 writes F16 (half the bytes of F32 for the matrices)" \
  "$("$PY" "$CZ_TOOLS/gguf_read.py" "$W/half.safetensors" | jq -r '[.tensors[] | select(.name == "blk.0.attn_q.weight") | .type] | join(",")')" "F16"

# a layout that does not fit its file is refused, and nothing is written
st_write "$W/bad.safetensors" '{"metadata": {"compressd.layout": "{\"tensors\": {\"w\": {\"dtype\": \"f16\", \"shape\": [4, 32], \"layout\": {\"encoding\": \"int8\", \"tensor\": \"w\", \"scale\": \"missing\"}}}, \"version\": 1}"},
  "tensors": [{"name": "w", "dtype": "F32", "shape": [4, 32]}]}' || bail "st_write"
"$CZ_BIN" decompress "$W/bad.safetensors" "$W/bad.out.safetensors" 2>"$W/bad.err"
is "a layout naming a missing tensor: exit 1, invalid_metadata, no output" \
  "$? $(grep -c invalid_metadata "$W/bad.err") $(ls "$W"/bad.out.safetensors* 2>/dev/null | wc -l | tr -d ' ')" "1 1 0"
"$CZ_BIN" decompress "$W/q4_k_m.gguf" 2>/dev/null
is "decompress without OUT: usage, exit 2" "$?" 2
"$CZ_BIN" decompress "$W/q4_k_m.gguf" "$W/x.safetensors" --dtype q8 2>/dev/null
is "an unknown --dtype: exit 2" "$?" 2

t_done
