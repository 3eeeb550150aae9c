#!/bin/sh
# test_readme: the README's "First job with curl" block, run as written against a test daemon,
# and its artifact checked against llama-quantize's output (tests/data/tiny-llama-manifest.json);
# then an int8 job on a safetensors model, checked with the independent reader.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

DATA=$(mktemp -d "$T_TMP/data.XXXXXX")
cz_start "$DATA" --workers 2 || bail "cannot start compressd"

# ---- 1. the README block, exactly ----

W=$T_TMP/work
mkdir -p "$W/tests"
ln -s "$CZ_DATA" "$W/tests/data"
awk '/<!-- first-job:begin -->/ { inblk = 1; next } /<!-- first-job:end -->/ { inblk = 0 }
     inblk && /^```/ { fence++; next } inblk && fence == 1 { print }' \
  "$CZ_SRCDIR/README.md" >"$T_TMP/block.orig.sh"
n_port=$(grep -c '127\.0\.0\.1:8420' "$T_TMP/block.orig.sh")
sed "s/127\.0\.0\.1:8420/127.0.0.1:$CZ_PORT/g" "$T_TMP/block.orig.sh" >"$W/block.sh"
if [ -s "$W/block.sh" ] && [ "$n_port" -ge 1 ] && ! grep -q 8420 "$W/block.sh"; then
  ok "README first-job block extracted ($(wc -l <"$W/block.sh") lines, port 8420 -> $CZ_PORT)"
else
  not_ok "README first-job block extracted with 127.0.0.1:8420 in it"
  diag "$(cat "$T_TMP/block.orig.sh")"
fi

t0=$(now_ms)
(cd "$W" && timeout 40 sh -e ./block.sh >"$T_TMP/block.out" 2>"$T_TMP/block.err")
rc=$?
if [ $rc -eq 0 ]; then
  ok "README block runs with sh -e ($(( $(now_ms) - t0 )) ms)"
else
  not_ok "README block runs with sh -e (exit $rc)"
  diag "stdout:" "$(cat "$T_TMP/block.out")" "stderr:" "$(cat "$T_TMP/block.err")"
fi
# its own output: the job summary {state, progress, artifact} and the report's totals
if jq -se 'length == 2 and .[0].state == "succeeded" and (.[0].artifact.sha256 | length) == 64
           and (.[1].bytes_in > .[1].bytes_out)' "$T_TMP/block.out" >/dev/null 2>&1; then
  ok "README block prints a succeeded job and the report totals"
else
  not_ok "README block prints a succeeded job and the report totals"
  diag "$(head -c 2000 "$T_TMP/block.out")"
fi

ART=$W/tiny-llama-q8_0.gguf
REPORT=$W/tiny-llama-q8_0.report.json
IN=$CZ_DATA/tiny-llama-f16.gguf
if "$PY" "$CZ_TOOLS/gguf_read.py" "$ART" >"$T_TMP/art.json" 2>"$T_TMP/art.err"; then
  ok "artifact tiny-llama-q8_0.gguf is read by gguf_read.py"
else
  not_ok "artifact tiny-llama-q8_0.gguf is read by gguf_read.py"
  diag "$(cat "$T_TMP/art.err")"
fi
"$PY" "$CZ_TOOLS/gguf_read.py" "$IN" >"$T_TMP/in.json"

# every tensor: type, shape and data sha256 as llama-quantize's Q8_0 run (ggml byte-identity)
if out=$("$PY" - "$T_TMP/art.json" "$CZ_DATA/tiny-llama-manifest.json" 2>&1 <<'EOF'
import json, sys
art = json.load(open(sys.argv[1]))
man = json.load(open(sys.argv[2]))
runs = [r for r in man["runs"] if r["ftype"] == "Q8_0" and r["options"] == []]
assert len(runs) == 1, "manifest: %d Q8_0 runs without options" % len(runs)
want = {t["name"]: t for t in runs[0]["tensors"]}
got = {t["name"]: t for t in art["tensors"]}
bad = []
if sorted(want) != sorted(got):
    bad.append("tensor names differ: missing %s, extra %s" % (sorted(set(want) - set(got)), sorted(set(got) - set(want))))
for name in sorted(set(want) & set(got)):
    w, g = want[name], got[name]
    for k in ("type", "ne", "nbytes", "sha256"):
        if w[k] != g[k]:
            bad.append("%s: %s is %r, llama-quantize has %r" % (name, k, g[k], w[k]))
print("%d tensors compared, %d differences" % (len(want), len(bad)))
for b in bad[:20]:
    print(b)
sys.exit(1 if bad else 0)
EOF
); then
  ok "every tensor's type and sha256 equal llama-quantize's Q8_0 output"
  diag "$out"
else
  not_ok "every tensor's type and sha256 equal llama-quantize's Q8_0 output"
  diag "$out"
fi

is "general.file_type is 7 (MOSTLY_Q8_0)" "$(jq -r '.kv["general.file_type"]' "$T_TMP/art.json")" 7
is "general.quantization_version is 2" "$(jq -r '.kv["general.quantization_version"]' "$T_TMP/art.json")" 2
missing=$(jq -n --slurpfile i "$T_TMP/in.json" --slurpfile a "$T_TMP/art.json" -r \
  '$i[0].kv | to_entries[] | select(.key != "general.file_type")
   | .key as $k | .value as $v | select(($a[0].kv | has($k) | not) or $a[0].kv[$k] != $v) | $k')
if [ -z "$missing" ] && [ -s "$T_TMP/in.json" ]; then
  ok "all $(jq '.kv | length' "$T_TMP/in.json") input KVs carried over (general.file_type updated)"
else
  not_ok "all input KVs carried over"
  diag "missing or changed: $missing"
fi
is "artifact keeps the input's alignment" "$(jq .alignment "$T_TMP/art.json")" "$(jq .alignment "$T_TMP/in.json")"

if out=$("$PY" "$CZ_TOOLS/check_artifact.py" "$IN" "$ART" "$REPORT" 2>&1); then
  ok "report passes check_artifact.py"
else
  not_ok "report passes check_artifact.py"
fi
diag "$out"

# the job as the API shows it
req GET /v1/jobs
JOB_ID=$(jf "$R_BODY" '.jobs[0].id')
is "the README made exactly one job" "$(jf "$R_BODY" '.jobs | length')" 1
JOB=$(job_json "$JOB_ID")
is "job state succeeded" "$(jf "$JOB" .state)" succeeded
is "job progress tensors_done == tensors_total == 39" \
  "$(jf "$JOB" '"\(.progress.tensors_done) \(.progress.tensors_total)"')" "39 39"
is "job progress bytes_done == bytes_total, fraction 1" \
  "$(jf "$JOB" '.progress.bytes_done == .progress.bytes_total and .progress.bytes_total > 0 and .progress.fraction == 1')" true
is "job attempts 1, no error" "$(jf "$JOB" '"\(.attempts) \(.error)"')" "1 null"
art_sha=$(sha256_of "$ART")
is "artifact.sha256 equals sha256sum of the downloaded file" "$(jf "$JOB" .artifact.sha256)" "$art_sha"
is "artifact.bytes and format" "$(jf "$JOB" '"\(.artifact.bytes) \(.artifact.format)"')" "$(wc -c <"$ART") gguf"
req_to /dev/null GET "/v1/jobs/$JOB_ID/artifact"
is "artifact ETag is the quoted sha256" "$(header ETag)" "\"$art_sha\""
req GET "/v1/jobs/$JOB_ID/artifact" -H "If-None-Match: \"$art_sha\""
is "artifact with If-None-Match of its ETag: 304" "$R_STATUS" 304
is "report names the job and the artifact's sha256" \
  "$(jq -r '"\(.job) \(.output.sha256)"' "$REPORT")" "$JOB_ID $art_sha"

# ---- 2. int8 on a safetensors model ----

ST=$T_TMP/mixed.safetensors
st_write "$ST" '{"metadata": {"format": "pt", "origin": "e2e"}, "tensors": [
  {"name": "layers.0.mlp.weight", "dtype": "F16", "shape": [64, 128], "seed": 1},
  {"name": "layers.0.attn.weight", "dtype": "BF16", "shape": [32, 64], "seed": 2},
  {"name": "norm.weight", "dtype": "F32", "shape": [64], "seed": 3}]}' || bail "st_write failed"
upload "$ST" mixed
is "upload of an F16/BF16/F32 safetensors file: 201" "$R_STATUS" 201
is "model: format, tensor and parameter counts, sha256" \
  "$(jf "$R_BODY" '"\(.format) \(.tensor_count) \(.parameter_count) \(.sha256) \(.bytes)"')" \
  "safetensors 3 10304 $(sha256_of "$ST") $(wc -c <"$ST")"
ST_MODEL=$MODEL_ID
req GET "/v1/models/$ST_MODEL"
is "GET model lists its tensors with dtype and shape" \
  "$(jf "$R_BODY" '[.tensors[] | "\(.name):\(.dtype):\(.shape | map(tostring) | join("x"))"] | sort | join(" ")')" \
  "layers.0.attn.weight:BF16:32x64 layers.0.mlp.weight:F16:64x128 norm.weight:F32:64"

submit '{"model": "'"$ST_MODEL"'", "steps": [{"op": "quantize", "type": "int8"}], "output": {"format": "safetensors"}}'
is "int8 job submitted: 202" "$R_STATUS" 202
wait_job "$JOB_ID" 20
is "int8 job succeeded" "$(jf "$JOB" '"\(.state) \(.progress.tensors_done)/\(.progress.tensors_total)"')" "succeeded 3/3"
[ "$(jf "$JOB" .state)" = succeeded ] || diag "job: $JOB"
OUT8=$T_TMP/mixed-int8.safetensors
req_to "$OUT8" GET "/v1/jobs/$JOB_ID/artifact"
ART8_STATUS=$R_STATUS
is "int8 artifact downloaded, sha256 matches the job" "$R_STATUS $(sha256_of "$OUT8")" "200 $(jf "$JOB" .artifact.sha256)"
req_to "$T_TMP/mixed-int8.report.json" GET "/v1/jobs/$JOB_ID/report"
REP8_STATUS=$R_STATUS
is "int8 report downloaded" "$R_STATUS" 200

if [ "$ART8_STATUS" != 200 ]; then
  not_ok "int8 artifact: I8 weights, [rows,1] F32 scales = amax/127, norm untouched, compressd metadata"
  diag "no artifact to check"
elif out=$("$PY" - "$CZ_TOOLS" "$ST" "$OUT8" "$(jf "$JOB" .model)" 2>&1 <<'EOF'
import hashlib, json, struct, sys
sys.path.insert(0, sys.argv[1])
import gguf_read
src = gguf_read.load(sys.argv[2])
art = gguf_read.load(sys.argv[3])
d = gguf_read.describe(art)
bad = []
t = {x["name"]: x for x in d["tensors"]}
want = {"layers.0.mlp.weight": ("I8", [64, 128]), "layers.0.mlp.weight_scale": ("F32", [64, 1]),
        "layers.0.attn.weight": ("I8", [32, 64]), "layers.0.attn.weight_scale": ("F32", [32, 1]),
        "norm.weight": ("F32", [64])}
if sorted(t) != sorted(want):
    bad.append("tensors %s, want %s" % (sorted(t), sorted(want)))
for name, (dt, shape) in want.items():
    if name in t and (t[name]["type"].upper() != dt or t[name]["shape"] != shape):
        bad.append("%s: %s %s, want %s %s" % (name, t[name]["type"], t[name]["shape"], dt, shape))
# norm.weight: untouched bytes
if gguf_read.tensor_bytes(art, "norm.weight") != gguf_read.tensor_bytes(src, "norm.weight"):
    bad.append("norm.weight bytes changed")
# scales: amax(row) / 127 rounded to float32 (exact: a double quotient of two floats rounds
# correctly to float); the int8 values within 1 of x / scale
for name, cols in (("layers.0.mlp.weight", 128), ("layers.0.attn.weight", 64)):
    x = gguf_read.decode(src, name)
    scales = gguf_read.decode(art, name + "_scale")
    q = struct.unpack("<%db" % len(x), gguf_read.tensor_bytes(art, name))
    for r in range(len(x) // cols):
        row = x[r * cols:(r + 1) * cols]
        s = struct.unpack("<f", struct.pack("<f", max(abs(v) for v in row) / 127.0))[0]
        if scales[r] != s:
            bad.append("%s row %d: scale %r, want %r" % (name, r, scales[r], s))
            break
        worst = max(abs(q[r * cols + j] - row[j] / s) for j in range(cols))
        if worst > 0.5 + 1e-3 or max(abs(v) for v in q[r * cols:(r + 1) * cols]) != 127:
            bad.append("%s row %d: int8 values off by %g from x/scale" % (name, r, worst))
            break
meta = d["metadata"] or {}
if meta.get("compressd.producer") != "compressd":
    bad.append("__metadata__ compressd.producer is %r" % meta.get("compressd.producer"))
try:
    rec = json.loads(meta.get("compressd.recipe", ""))
    if rec["steps"][0]["type"] != "int8":
        bad.append("compressd.recipe %r" % rec)
except (ValueError, KeyError, IndexError, TypeError):
    bad.append("compressd.recipe not a recipe: %r" % meta.get("compressd.recipe"))
sha = hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()
if meta.get("compressd.source_sha256") != sha:
    bad.append("compressd.source_sha256 %r, want %s" % (meta.get("compressd.source_sha256"), sha))
for k, v in {"format": "pt", "origin": "e2e"}.items():
    if meta.get(k) != v:
        bad.append("input __metadata__ %s not carried over: %r" % (k, meta.get(k)))
print("metadata: %s" % json.dumps(meta, sort_keys=True))
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
EOF
); then
  ok "int8 artifact: I8 weights, [rows,1] F32 scales = amax/127, norm untouched, compressd metadata"
  diag "$out"
else
  not_ok "int8 artifact: I8 weights, [rows,1] F32 scales = amax/127, norm untouched, compressd metadata"
  diag "$out"
fi

if [ "$ART8_STATUS $REP8_STATUS" != "200 200" ]; then
  not_ok "int8 report passes check_artifact.py"
  diag "no artifact or report to check"
elif out=$("$PY" "$CZ_TOOLS/check_artifact.py" "$ST" "$OUT8" "$T_TMP/mixed-int8.report.json" 2>&1); then
  ok "int8 report passes check_artifact.py"
  diag "$out"
else
  not_ok "int8 report passes check_artifact.py"
  diag "$out"
fi

check "DATA_DIR/tmp is empty after the jobs" dir_empty "$DATA/tmp"
cz_stop "$CZ_PID"
is "SIGTERM: daemon exits 0" "$CZ_EXIT" 0
t_done
