#!/bin/sh
# test_methods: prune, factorize and palettize composed with quantize, through the CLI and the
# daemon, on tests/data/tiny-llama-f16.gguf. Every artifact is read by the independent reader
# (tests/tools/gguf_read.py) and its report recomputed from the input and the artifact by
# tests/tools/check_artifact.py (which rebuilds the layouts of docs/formats.md section 4);
# the daemon's artifacts must equal the CLI's byte for byte.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

IN=$CZ_DATA/tiny-llama-f16.gguf
W=$T_TMP/work
mkdir -p "$W"

# cli NAME OUT RECIPE: compressd compress with 2 threads; the report next to OUT
cli() {
  printf '%s\n' "$3" >"$W/$1.recipe.json"
  if "$CZ_BIN" compress --recipe "$W/$1.recipe.json" "$IN" "$2" --threads 2 >"$W/$1.out" 2>&1 &&
    [ -s "$2" ] && [ -s "$2.report.json" ]; then
    ok "$1: compressd compress ($(wc -c <"$2") bytes)"
    return 0
  fi
  not_ok "$1: compressd compress"
  diag "$(cat "$W/$1.out")"
  return 1
}

# checked NAME ART REPORT: gguf_read.py reads the artifact, check_artifact.py agrees
checked() {
  if "$PY" "$CZ_TOOLS/gguf_read.py" "$2" >"$W/$1.json" 2>"$W/$1.err"; then
    ok "$1: gguf_read.py reads the artifact"
  else
    not_ok "$1: gguf_read.py reads the artifact"
    diag "$(cat "$W/$1.err")"
  fi
  if out=$("$PY" "$CZ_TOOLS/check_artifact.py" "$IN" "$2" "$3" 2>&1); then
    ok "$1: check_artifact.py recomputes the report"
  else
    not_ok "$1: check_artifact.py recomputes the report"
  fi
  diag "$out"
}

# py NAME SCRIPT ARGS...: a Python check (exit 0 = ok), its output as diagnostics
py() {
  _n=$1
  _s=$2
  shift 2
  if out=$(printf '%s\n' "$_s" | "$PY" - "$CZ_TOOLS" "$@" 2>&1); then ok "$_n"; else not_ok "$_n"; fi
  [ -n "$out" ] && diag "$out"
}

# ---- 1. prune 2:4 then q8_0, GGUF ----

R1='{"steps": [{"op": "prune", "method": "nm", "n": 2, "m": 4}, {"op": "quantize", "type": "q8_0"}], "output": {"format": "gguf"}}'
A1=$W/p24-q8_0.gguf
if cli "prune 2:4 + q8_0" "$A1" "$R1"; then
  checked "prune 2:4 + q8_0" "$A1" "$A1.report.json"
  py "prune 2:4 + q8_0: the 29 matrices other than token_embd are q8_0 with at most 2 non-zeros in every 4" '
import sys
sys.path.insert(0, sys.argv[1])
import gguf_read, json
art, inp = gguf_read.load(sys.argv[2]), gguf_read.load(sys.argv[3])
rep = json.load(open(sys.argv[2] + ".report.json"))
bad, n = [], 0
for t in art.tensors:
    if len(t.ne) == 2 and t.name != "token_embd.weight":
        n += 1
        v = gguf_read.decode(art, t)
        if t.type != "q8_0":
            bad.append("%s is %s" % (t.name, t.type))
        if any(sum(x != 0 for x in v[g:g + 4]) > 2 for g in range(0, len(v), 4)):
            bad.append("%s: a group of 4 has more than 2 non-zeros" % t.name)
sp = [e["sparsity"] for e in rep["tensors"] if "sparsity" in e]
print("%d matrices checked; sparsity of the %d pruned: %s..%s; file %d -> %d bytes"
      % (n, len(sp), min(sp), max(sp), rep["totals"]["file_bytes_in"], rep["totals"]["file_bytes_out"]))
for b in bad[:10]:
    print(b)
sys.exit(1 if bad or n != 29 or len(sp) != 29 else 0)
' "$A1" "$IN"
fi

# ---- 2. factorize (rsvd) then q8_0 on the factors, GGUF ----

R2='{"steps": [{"op": "factorize", "method": "rsvd", "rank": 64, "rank_multiple": 32, "include": ["blk.0.attn_q.weight", "blk.0.ffn_down.weight"]}, {"op": "quantize", "type": "q8_0"}], "output": {"format": "gguf"}}'
A2=$W/lowrank-q8_0.gguf
if cli "factorize + q8_0" "$A2" "$R2"; then
  checked "factorize + q8_0" "$A2" "$A2.report.json"
  is "factorize + q8_0: factors are q8_0 of ne [64,256]/[256,64] and [64,256]/[768,64]" \
    "$(jq -r '[.tensors[] | select(.name | test("lowrank")) | "\(.name)=\(.type)\(.ne)"] | join(" ")' "$W/factorize + q8_0.json")" \
    "blk.0.attn_q.lowrank_a.weight=q8_0[64,256] blk.0.attn_q.lowrank_b.weight=q8_0[256,64] blk.0.ffn_down.lowrank_a.weight=q8_0[64,256] blk.0.ffn_down.lowrank_b.weight=q8_0[768,64]"
  diag "$(jq -r '.tensors[] | select(.rank) | "\(.name): rank \(.rank), energy kept \(.energy_kept | .*1000 | round/1000), rel_l2 \(.rel_l2 | .*1000 | round/1000), \(.bytes_in) -> \(.bytes_out) bytes"' "$A2.report.json")"
fi

# ---- 3. palettize 4 bits, groups of 32 channels, safetensors ----

R3='{"steps": [{"op": "palettize", "bits": 4, "granularity": "group", "group_size": 32, "include": ["blk.0.*"]}], "output": {"format": "safetensors"}}'
A3=$W/palette4.safetensors
if cli "palettize 4-bit" "$A3" "$R3"; then
  checked "palettize 4-bit" "$A3" "$A3.report.json"
  is "palettize 4-bit: 7 tensors palettized, LUTs [groups,16] F32 and U8 indices" \
    "$(jq -r '[.tensors[] | select(.name | endswith("_lut")) | .shape[1]] | unique | join(",")' "$W/palettize 4-bit.json") $(jq '[.tensors[] | select(.output_type == "palette4")] | length' "$A3.report.json")" \
    "16 7"
  diag "$(jq -r '.tensors[] | select(.output_type == "palette4") | "\(.name): rel_l2 \(.rel_l2 | .*10000 | round/10000), SNR \(.snr_db | .*100 | round/100) dB, bpw \(.bpw | .*100 | round/100)"' "$A3.report.json")"
fi

# ---- 4. magnitude 50 % in compressed-tensors' sparse-bitmask layout ----

R4='{"steps": [{"op": "prune", "sparsity": 0.5, "layout": "sparse-bitmask", "include": ["blk.1.*"]}], "output": {"format": "safetensors"}}'
A4=$W/bitmask.safetensors
if cli "sparse-bitmask" "$A4" "$R4"; then
  checked "sparse-bitmask" "$A4" "$A4.report.json"
  is "sparse-bitmask: blk.1.attn_q has .compressed/.bitmask/.shape/.row_offsets and no dense weight" \
    "$(jq -r '[.tensors[] | select(.name | startswith("blk.1.attn_q")) | "\(.name):\(.type)"] | join(" ")' "$W/sparse-bitmask.json")" \
    "blk.1.attn_q.compressed:F16 blk.1.attn_q.bitmask:U8 blk.1.attn_q.shape:I64 blk.1.attn_q.row_offsets:I64"
fi

# ---- 5. structured rows, then int8 ----

R5='{"steps": [{"op": "prune", "method": "structured", "sparsity": 0.25, "include": ["blk.2.ffn_up.weight"]}, {"op": "quantize", "type": "int8"}], "output": {"format": "safetensors"}}'
A5=$W/structured-int8.safetensors
if cli "structured + int8" "$A5" "$R5"; then
  checked "structured + int8" "$A5" "$A5.report.json"
  is "structured + int8: 576 of 768 rows kept, shape changed, kept indices I64" \
    "$(jq -r '.tensors[] | select(.name == "blk.2.ffn_up.weight") | "\(.rows_kept) \(.shape_changed) \(.outputs | map(.name + ":" + .dtype) | join(" "))"' "$A5.report.json")" \
    "576 true blk.2.ffn_up.weight:I8 blk.2.ffn_up.weight_scale:F32 blk.2.ffn_up.weight.kept_rows:I64"
fi

# ---- 6. global magnitude, then 3-bit palettes that keep the zeros ----

R6='{"steps": [{"op": "prune", "sparsity": 0.3, "scope": "global", "include": ["blk.3.*"]}, {"op": "palettize", "bits": 3, "granularity": "channel", "include": ["blk.3.*"]}], "output": {"format": "safetensors"}}'
A6=$W/global-palette3.safetensors
if cli "global + palettize" "$A6" "$R6"; then
  checked "global + palettize" "$A6" "$A6.report.json"
  py "global + palettize: exactly 30 % zeros over blk.3's matrices, entry 0 of every LUT is 0" '
import sys, json
sys.path.insert(0, sys.argv[1])
import gguf_read
art = gguf_read.load(sys.argv[2])
rep = json.load(open(sys.argv[2] + ".report.json"))
n = z = 0
for e in rep["tensors"]:
    if e.get("output_type") == "palette3":
        cnt = 1
        for d in e["shape"]:
            cnt *= d
        n += cnt
        z += round(e["sparsity"] * cnt)
        lut = gguf_read.decode(art, e["name"] + "_lut")
        if any(lut[i] != 0 for i in range(0, len(lut), 8)):
            print("%s: a LUT without 0 in entry 0" % e["name"]); sys.exit(1)
print("%d of %d weights zero (%.6f)" % (z, n, z / n))
sys.exit(0 if n and z == round(0.3 * n) else 1)
' "$A6"
fi

# ---- 7. compressd decompress (core/cz_decompress.c) reverses every layout ----

DZ_CHECK='
import sys, json, math
sys.path.insert(0, sys.argv[1])
import gguf_read
art, dense, inp = sys.argv[2], gguf_read.load(sys.argv[3]), gguf_read.load(sys.argv[4])
rep = json.load(open(art + ".report.json"))
bad = []
if [t.name for t in dense.tensors] != [t.name for t in inp.tensors]:
    bad.append("names %s..., want the input s" % [t.name for t in dense.tensors][:4])
worst = 0.0
for e in rep["tensors"]:
    t = dense.find(e["name"])
    if t is None or t.shape != e["shape"]:
        bad.append("%s: missing or shape %s" % (e["name"], t and t.shape))
        continue
    if e.get("note") is None and t.type.lower() != sys.argv[5]:
        bad.append("%s: %s, want %s" % (e["name"], t.type, sys.argv[5]))
    if e.get("note") is not None and sys.argv[5] != "f32":
        continue  # an F32 norm written as F16 is rounded: nothing to compare with the report
    w, y = gguf_read.decode(inp, e["name"]), gguf_read.decode(dense, t)
    r2 = math.fsum(a * a for a in w)
    e2 = math.fsum((a - b) * (a - b) for a, b in zip(w, y))
    rel = math.sqrt(e2 / r2) if e2 else 0.0
    d = abs(rel - e["rel_l2"]) / max(e["rel_l2"], 1e-300) if e["rel_l2"] else rel
    worst = max(worst, d)
    if d > float(sys.argv[6]):
        bad.append("%s: rel_l2 of the decompressed tensor %.9g, report %.9g" % (e["name"], rel, e["rel_l2"]))
print("%d tensors, rel_l2 of the decompressed tensors within %.2g of the report" % (len(rep["tensors"]), worst))
for b in bad[:10]:
    print(b)
sys.exit(1 if bad else 0)
'
for case in "1:$A1" "2:$A2" "3:$A3" "4:$A4" "5:$A5" "6:$A6"; do
  n=${case%%:*}
  art=${case#*:}
  [ -s "$art" ] || continue
  D=$W/dense$n.safetensors
  if "$CZ_BIN" decompress "$art" "$D" --dtype f32 >"$W/dz$n.out" 2>&1; then
    py "decompress case $n: every tensor back under its name and shape, F32, errors as the report says" "$DZ_CHECK" "$art" "$D" "$IN" f32 1e-6
  else
    not_ok "decompress case $n"
    diag "$(cat "$W/dz$n.out")"
  fi
done
if "$CZ_BIN" decompress "$A3" "$W/dense3.f16.safetensors" --dtype f16 >"$W/dz3b.out" 2>&1; then
  # palette entries are float32: rounded to F16 they move the error a little
  py "decompress --dtype f16: F16 tensors, errors as the report says within 1e-4" "$DZ_CHECK" "$A3" "$W/dense3.f16.safetensors" "$IN" f16 1e-4
else
  not_ok "decompress --dtype f16"
  diag "$(cat "$W/dz3b.out")"
fi

# ---- 8. the daemon writes the same bytes ----

DATA=$(mktemp -d "$T_TMP/data.XXXXXX")
if cz_start "$DATA" --workers 2; then
  upload "$IN" tiny-llama
  is "upload tiny-llama: 201" "$R_STATUS" 201
  for case in "1:$A1:$R1" "3:$A3:$R3" "5:$A5:$R5"; do
    n=${case%%:*}
    rest=${case#*:}
    cli_art=${rest%%:*}
    recipe=${rest#*:}
    submit "$(printf '%s' "$recipe" | jq -c --arg m "$MODEL_ID" '. + {model: $m}')"
    if [ "$R_STATUS" != 202 ]; then
      not_ok "daemon case $n: job accepted"
      diag "$R_STATUS $R_BODY"
      continue
    fi
    wait_job "$JOB_ID" 120
    is "daemon case $n: job succeeded" "$(jf "$JOB" .state)" succeeded
    req_to "$W/d$n.art" GET "/v1/jobs/$JOB_ID/artifact"
    req_to "$W/d$n.report.json" GET "/v1/jobs/$JOB_ID/report"
    is "daemon case $n: artifact identical to the CLI's" "$(sha256_of "$W/d$n.art")" "$(sha256_of "$cli_art")"
    if out=$("$PY" "$CZ_TOOLS/check_artifact.py" "$IN" "$W/d$n.art" "$W/d$n.report.json" 2>&1); then
      ok "daemon case $n: check_artifact.py recomputes the job's report"
    else
      not_ok "daemon case $n: check_artifact.py recomputes the job's report"
      diag "$out"
    fi
  done
  # a dry plan of a whole-tensor recipe is refused or accepted like any other: bad parameters
  submit '{"model": "'"$MODEL_ID"'", "steps": [{"op": "prune", "method": "nm", "n": 4, "m": 4}]}'
  expect_error "prune n >= m refused at submit" 400 invalid_parameter
  submit '{"model": "'"$MODEL_ID"'", "steps": [{"op": "palettize", "bits": 4}], "output": {"format": "gguf"}}'
  expect_error "palettize into GGUF refused at submit" 400 invalid_recipe
  cz_stop
else
  not_ok "compressd serve starts"
fi

t_done
