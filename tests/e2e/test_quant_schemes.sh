#!/bin/sh
# test_quant_schemes: the safetensors quantization schemes (docs/formats.md 4.9-4.12) on
# tests/data/tiny-llama-f16.gguf, through the CLI and through the daemon's HTTP API. Every
# artifact is read by the independent reader and its report recomputed by
# tests/tools/check_artifact.py (which decodes the packed layouts from the format description
# and checks quantization_config); `compressd decompress` must give back every tensor under
# its name and shape with the error the report gave; the daemon's artifact must equal the
# CLI's byte for byte.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

IN=$CZ_DATA/tiny-llama-f16.gguf
W=$T_TMP/work
mkdir -p "$W"
export CZ_TOOLS

# The cases: NAME|steps (the recipe's steps, comma-separated)
CASES='int4-g128-asym|{"op": "quantize", "scheme": "int4", "group_size": 128, "symmetric": false}
int4-g64-sym|{"op": "quantize", "scheme": "int4", "group_size": 64}
int8-g32-asym|{"op": "quantize", "scheme": "int8", "group_size": 32, "symmetric": false}
int8-channel|{"op": "quantize", "scheme": "int8", "granularity": "channel"}
int3-g64-hqq|{"op": "quantize", "scheme": "int3", "group_size": 64, "hqq": true}
int2-g32-asym|{"op": "quantize", "scheme": "int2", "group_size": 32, "symmetric": false}
nf4|{"op": "quantize", "scheme": "nf4"}
nf4-dq|{"op": "quantize", "scheme": "nf4", "double_quant": true, "exclude": ["*.attn_v.weight"]}
fp8-channel|{"op": "quantize", "scheme": "fp8_e4m3"}
fp8-block|{"op": "quantize", "scheme": "fp8_e4m3", "block": [128, 128]}
prune24-int4|{"op": "prune", "method": "nm", "n": 2, "m": 4}, {"op": "quantize", "scheme": "int4", "group_size": 128}'

recipe_of() { printf '{"steps": [%s], "output": {"format": "safetensors"}}' "$1"; }

# dense DENSE ARTIFACT: names, shapes and per-tensor relative error against IN as the report says
dense() {
  "$PY" - "$IN" "$1" "$2.report.json" <<'EOF'
import json, math, os, sys
sys.path.insert(0, os.environ["CZ_TOOLS"])
import gguf_read as g
mi, md = g.load(sys.argv[1]), g.load(sys.argv[2])
report = {t["name"]: t for t in json.load(open(sys.argv[3]))["tensors"]}
bad = []
if sorted(t.name for t in mi.tensors) != sorted(t.name for t in md.tensors):
    bad.append("tensor names differ")
shape = {t.name: list(t.ne) for t in md.tensors}
for t in mi.tensors:
    if shape.get(t.name) != list(t.ne):
        bad.append("%s: shape %s, input %s" % (t.name, shape.get(t.name), list(t.ne)))
        continue
    x, y = g.decode(mi, t.name), g.decode(md, t.name)
    num = math.fsum((a - b) ** 2 for a, b in zip(x, y))
    den = math.fsum(a * a for a in x)
    rel = math.sqrt(num / den) if den else 0.0
    want = report[t.name]["rel_l2"] or 0.0
    if abs(rel - want) > 1e-6 * max(want, 1e-3):
        bad.append("%s: relative error %.9g, the report says %.9g" % (t.name, rel, want))
print("%d tensors back, %d problems" % (len(md.tensors), len(bad)))
for b in bad[:10]:
    print(b)
sys.exit(1 if bad else 0)
EOF
}

echo "$CASES" >"$W/cases"
while IFS='|' read -r name step; do
  recipe_of "$step" >"$W/$name.recipe.json"
  A=$W/$name.safetensors
  if ! "$CZ_BIN" compress --recipe "$W/$name.recipe.json" "$IN" "$A" --threads 2 >"$W/$name.out" 2>&1; then
    not_ok "$name: compressd compress"
    diag "$(cat "$W/$name.out")"
    continue
  fi
  ok "$name: compressd compress ($(wc -c <"$A") bytes)"
  if out=$("$PY" "$CZ_TOOLS/check_artifact.py" "$IN" "$A" "$A.report.json" 2>&1); then
    ok "$name: check_artifact.py decodes the layout and recomputes the report"
  else
    not_ok "$name: check_artifact.py decodes the layout and recomputes the report"
  fi
  diag "$out"
  diag "$(jq -r '[.tensors[] | select(.layout) | .rel_l2] as $r | "\($r | length) tensors quantized, rel_l2 \($r | min | .*10000 | round/10000)..\($r | max | .*10000 | round/10000), \(.totals.file_bytes_out) bytes"' "$A.report.json")"
  if "$CZ_BIN" decompress "$A" "$W/$name.dense.safetensors" >"$W/$name.dz" 2>&1 &&
    out=$(dense "$W/$name.dense.safetensors" "$A" 2>&1); then
    ok "$name: decompress gives every tensor back with the report's error"
  else
    not_ok "$name: decompress gives every tensor back with the report's error"
    diag "$(cat "$W/$name.dz")"
  fi
  diag "$out"
done <"$W/cases"

# the tensor names, dtypes and shapes of one matrix
is "int4 g128 asym: weight_packed I32 [256,32], weight_scale F32 [256,2], weight_zero_point I32 [32,2], weight_shape I64 [2]" \
  "$("$PY" "$CZ_TOOLS/gguf_read.py" "$W/int4-g128-asym.safetensors" | jq -r '[.tensors[] | select(.name | startswith("blk.0.attn_q.weight")) | "\(.name | ltrimstr("blk.0.attn_q."))=\(.type)\(.shape)"] | join(" ")')" \
  "weight_packed=I32[256,32] weight_scale=F32[256,2] weight_zero_point=I32[32,2] weight_shape=I64[2]"
is "nf4 double quantization (bitsandbytes' names): weight U8 [98304,1], weight.absmax U8 [3072], weight.quant_map F32 [16], weight.nested_absmax F32 [12], weight.nested_quant_map F32 [256], weight.quant_state.bitsandbytes__nf4 U8 (JSON)" \
  "$("$PY" "$CZ_TOOLS/gguf_read.py" "$W/nf4-dq.safetensors" | jq -r '[.tensors[] | select(.name | startswith("blk.0.ffn_up.weight")) | "\(.name | ltrimstr("blk.0.ffn_up."))=\(.type)\(if (.name | endswith("quant_state.bitsandbytes__nf4")) then "" else .shape end)"] | join(" ")')" \
  "weight=U8[98304,1] weight.absmax=U8[3072] weight.quant_map=F32[16] weight.nested_absmax=F32[12] weight.nested_quant_map=F32[256] weight.quant_state.bitsandbytes__nf4=U8"
# nf4's quantization_config is bitsandbytes' (transformers' BitsAndBytesConfig keys); its
# llm_int8_skip_modules are the 2-D .weight tensors the artifact keeps as they were (the
# independent reader's view: a 2-D .weight with no .absmax; the recipe excludes attn_v)
is "nf4 double quantization: quantization_config bitsandbytes nf4, double quant, storage uint8, the dense 2-D weights skipped" \
  "$("$PY" "$CZ_TOOLS/gguf_read.py" "$W/nf4-dq.safetensors" | jq -r '(.metadata.quantization_config | fromjson) as $q
     | ([.tensors[] | .name] ) as $names
     | ([.tensors[] | select((.name | endswith(".weight")) and (.shape | length) == 2 and ((.name + ".absmax") as $a | $names | index($a) | not)) | .name | rtrimstr(".weight")]) as $dense
     | "\($q.quant_method) \($q.bnb_4bit_quant_type) \($q.bnb_4bit_use_double_quant) \($q.bnb_4bit_quant_storage) \($q.load_in_4bit) \($q.llm_int8_skip_modules == $dense) \($dense | map(select(endswith("attn_v"))) | length > 0)"')" \
  "bitsandbytes nf4 true uint8 true true true"
is "fp8 128x128: weight F8_E4M3 [768,256], weight_scale F32 [6,2]; quantization_config float-quantized, block [128,128]" \
  "$("$PY" "$CZ_TOOLS/gguf_read.py" "$W/fp8-block.safetensors" | jq -r '([.tensors[] | select(.name | startswith("blk.0.ffn_up.weight")) | "\(.name | ltrimstr("blk.0.ffn_up."))=\(.type)\(.shape)"] | join(" ")) + " " + (.metadata.quantization_config | fromjson | "\(.format) \(.config_groups.group_0.weights.block_structure)")')" \
  "weight=F8_E4M3[768,256] weight_scale=F32[6,2] float-quantized [128,128]"

# ---- the daemon: one job per scheme, the same bytes as the CLI ----
DATA=$(mktemp -d "$T_TMP/data.XXXXXX")
if cz_start "$DATA" --workers 2; then
  upload "$IN" tiny-llama
  is "upload tiny-llama: 201" "$R_STATUS" 201
  while IFS='|' read -r name step; do
    submit "$(recipe_of "$step" | jq -c --arg m "$MODEL_ID" '. + {model: $m}')"
    if [ "$R_STATUS" != 202 ]; then
      not_ok "daemon $name: job accepted"
      diag "$R_STATUS $R_BODY"
      continue
    fi
    wait_job "$JOB_ID" 120
    is "daemon $name: job succeeded" "$(jf "$JOB" .state)" succeeded
    req_to "$W/d-$name.art" GET "/v1/jobs/$JOB_ID/artifact"
    req_to "$W/d-$name.report.json" GET "/v1/jobs/$JOB_ID/report"
    is "daemon $name: artifact identical to the CLI's" "$(sha256_of "$W/d-$name.art")" "$(sha256_of "$W/$name.safetensors")"
    if out=$("$PY" "$CZ_TOOLS/check_artifact.py" "$IN" "$W/d-$name.art" "$W/d-$name.report.json" 2>&1); then
      ok "daemon $name: check_artifact.py recomputes the job's report"
    else
      not_ok "daemon $name: check_artifact.py recomputes the job's report"
      diag "$out"
    fi
  done <"$W/cases"
  submit '{"model": "'"$MODEL_ID"'", "steps": [{"op": "quantize", "scheme": "int4", "group_size": 100}]}'
  expect_error "group_size 100 refused at submit" 400 invalid_parameter
  submit '{"model": "'"$MODEL_ID"'", "steps": [{"op": "quantize", "scheme": "int4"}], "output": {"format": "gguf"}}'
  expect_error "int4 into GGUF refused at submit" 400 invalid_recipe
  cz_stop
else
  not_ok "compressd serve starts"
fi

t_done
