#!/bin/sh
# test_calibration: importance matrices through the API and the CLI: POST/GET
# /v1/calibrations (imatrix GGUF and legacy .dat, rejected files leave nothing behind), a
# job's "calibration" (checked at submit, used by the worker: its artifact equals
# llama-quantize --imatrix byte for byte), types that need an importance matrix refused
# without one, "dry_run" (the plan and the exact size, nothing queued), and
# `compressd compress --calibration` / `--dry-run`.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

IN=$CZ_DATA/tiny-llama-f16.gguf
IMATRIX=$CZ_DATA/tiny-llama-imatrix.gguf
MANIFEST=$CZ_DATA/tiny-llama-manifest.json

# same_as_run FILE FTYPE OPTIONS_JSON: every tensor of FILE (a GGUF) has the type, shape, size
# and sha256 of that manifest run's output
same_as_run() {
  "$PY" "$CZ_TOOLS/gguf_read.py" "$1" >"$T_TMP/art.json" 2>"$T_TMP/art.err" || {
    cat "$T_TMP/art.err"
    return 1
  }
  "$PY" - "$T_TMP/art.json" "$MANIFEST" "$2" "$3" <<'EOF'
import json, sys
art = json.load(open(sys.argv[1]))
man = json.load(open(sys.argv[2]))
opts = json.loads(sys.argv[4])
runs = [r for r in man["runs"] if r["ftype"] == sys.argv[3] and r["options"] == opts]
assert len(runs) == 1, "manifest: %d runs %s %s" % (len(runs), sys.argv[3], opts)
want = {t["name"]: t for t in runs[0]["tensors"]}
got = {t["name"]: t for t in art["tensors"]}
bad = []
if sorted(want) != sorted(got):
    bad.append("tensor names differ")
for name in sorted(set(want) & set(got)):
    for k in ("type", "ne", "nbytes", "sha256"):
        w, g = want[name][k], got[name][k]
        if k == "type":  # ggml's names: "q4_K", written "q4_k" by the manifest's tool
            w, g = w.lower(), g.lower()
        if w != g:
            bad.append("%s: %s is %r, llama-quantize has %r" % (name, k, got[name][k], want[name][k]))
if art["kv"].get("general.file_type") != runs[0]["file_type"]:
    bad.append("general.file_type %r, want %r" % (art["kv"].get("general.file_type"), runs[0]["file_type"]))
print("%d tensors compared, %d differences" % (len(want), len(bad)))
for b in bad[:20]:
    print(b)
sys.exit(1 if bad else 0)
EOF
}

# dat_from_gguf OUT: the golden imatrix rewritten in the legacy .dat format. ncall 1, so that
# the stored values are the means themselves (in_sum2 / count, divided in double and rounded
# to float, which is the float division) and both files give the same weights.
dat_from_gguf() {
  "$PY" - "$IMATRIX" "$1" <<'EOF'
import os, struct, sys
sys.path.insert(0, os.environ["CZ_TOOLS"])
import gguf_read
m = gguf_read.load(sys.argv[1])
entries = []
for t in m.tensors:
    if t.name.endswith(".in_sum2"):
        base = t.name[:-len(".in_sum2")]
        sums = gguf_read.decode(m, t.name)
        count = gguf_read.decode(m, base + ".counts")[0]
        entries.append((base, [s / count for s in sums]))
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("<i", len(entries)))
    for name, vals in entries:
        b = name.encode()
        f.write(struct.pack("<i", len(b)) + b + struct.pack("<ii", 1, len(vals)))
        f.write(struct.pack("<%df" % len(vals), *vals))
    f.write(struct.pack("<ii", 10, 9) + b"synthetic")
EOF
}
export CZ_TOOLS

DATA=$(mktemp -d "$T_TMP/data.XXXXXX")
cz_start "$DATA" --workers 2 || bail "cannot start compressd"

upload "$IN" tiny-llama
LLAMA=$MODEL_ID
[ -n "$LLAMA" ] || bail "model upload failed: $R_STATUS $R_BODY"

# ---- upload ----

req POST "/v1/calibrations?name=tiny-imatrix.gguf" -H 'Content-Type: application/octet-stream' \
  --data-binary "@$IMATRIX"
CAL=$(jf "$R_BODY" '.id // empty')
is "POST /v1/calibrations (imatrix GGUF): 201 with id, format, entries, chunks, datasets" \
  "$R_STATUS $(jf "$R_BODY" '"\(.id | startswith("cal_")) \(.name) \(.format) \(.entries) \(.chunk_count) \(.chunk_size) \(.datasets | join(",")) \(.bytes) \(.sha256 | length)"')" \
  "201 true tiny-imatrix.gguf gguf 29 10 512 synthetic $(wc -c <"$IMATRIX" | tr -d ' ') 64"
is "the blob is the file" "$(jf "$R_BODY" .sha256)" "$(sha256_of "$IMATRIX")"
req GET "/v1/calibrations/$CAL"
is "GET /v1/calibrations/{id}: 200, the 29 weights it covers" \
  "$R_STATUS $(jf "$R_BODY" '"\(.tensors | length) \(.tensors | index("blk.0.attn_q.weight") != null) \(.tensors | index("output.weight") != null)"')" \
  "200 29 true true"
req GET /v1/calibrations
is "GET /v1/calibrations lists it" "$R_STATUS $(jf "$R_BODY" '[.calibrations[].id] | join(",")') $(jf "$R_BODY" .next_page_token)" \
  "200 $CAL null"

dat_from_gguf "$T_TMP/imatrix.dat" || bail "cannot write the .dat"
req POST /v1/calibrations -H 'Content-Type: application/octet-stream' --data-binary "@$T_TMP/imatrix.dat"
DAT=$(jf "$R_BODY" '.id // empty')
is "POST /v1/calibrations (legacy .dat): 201, format dat, 29 entries, 10 chunks, dataset" \
  "$R_STATUS $(jf "$R_BODY" '"\(.name) \(.format) \(.entries) \(.chunk_count) \(.chunk_size) \(.datasets | join(","))"')" \
  "201 imatrix dat 29 10 0 synthetic"

# rejected uploads: the reason, nothing left behind
req POST /v1/calibrations -H 'Content-Type: application/json' --data-binary "@$IMATRIX"
expect_error "calibration as JSON" 415 unsupported_media_type
req POST /v1/calibrations -H 'Content-Type: application/octet-stream' --data-binary "@$IN"
expect_error "a model is not a calibration" 422 invalid_metadata
head -c 3000 "$IMATRIX" >"$T_TMP/cut.gguf"
req POST /v1/calibrations -H 'Content-Type: application/octet-stream' --data-binary "@$T_TMP/cut.gguf"
expect_error "a truncated imatrix GGUF" 422 truncated
printf 'not an importance matrix at all, just text' >"$T_TMP/junk.dat"
req POST /v1/calibrations -H 'Content-Type: application/octet-stream' --data-binary "@$T_TMP/junk.dat"
expect_error "junk as .dat" 422 "*"
req POST "/v1/calibrations?name=" -H 'Content-Type: application/octet-stream' --data-binary "@$IMATRIX"
expect_error "an empty name" 400 invalid_argument
check "rejected uploads leave DATA_DIR/tmp empty" dir_empty "$DATA/tmp"
req GET /v1/calibrations
is "and list nothing new" "$(jf "$R_BODY" '.calibrations | length')" 2
req GET /v1/calibrations/cal_000000000000000000000000
expect_error "GET an unknown calibration" 404 not_found

# ---- jobs ----

njobs() { curl -sf --max-time 10 "$CZ_URL/v1/jobs?page_size=1000" | jq '.jobs | length'; }

submit '{"model": "'"$LLAMA"'", "steps": [{"op": "quantize", "preset": "Q4_K_M"}], "calibration": "cal_000000000000000000000000"}'
expect_error "a job naming an unknown calibration" 400 invalid_argument
submit '{"model": "'"$LLAMA"'", "steps": [{"op": "quantize", "preset": "Q4_K_M"}], "calibration": 7}'
expect_error "calibration that is not a string" 400 invalid_recipe
submit '{"model": "'"$LLAMA"'", "steps": [{"op": "quantize", "preset": "Q2_K_S"}]}'
expect_error "Q2_K_S without an importance matrix" 400 invalid_parameter
case $(jf "$R_BODY" .error.message) in
  *"importance matrix"*calibration*) ok "the message says what is missing and how to give it" ;;
  *) not_ok "the message says what is missing and how to give it"; diag "$R_BODY" ;;
esac
is "refused submissions made no job" "$(njobs)" 0

# dry run: the plan and the exact size; nothing queued
submit '{"model": "'"$LLAMA"'", "steps": [{"op": "quantize", "preset": "Q4_K_M"}], "calibration": "'"$CAL"'", "dry_run": true}'
DRY=$R_BODY
is "dry run: 200 with the plan of 39 tensors, the recipe and the calibration" \
  "$R_STATUS $(jf "$DRY" '"\(.dry_run) \(.format) \(.tensors | length) \(.recipe.steps[0].preset) \(.recipe.steps[0].file_type) \(.calibration)"')" \
  "200 true gguf 39 Q4_K_M 15 $CAL"
is "dry run: the per-tensor types of llama-quantize's Q4_K_M" \
  "$(jf "$DRY" '[.tensors[] | .output_type] | group_by(.) | map("\(.[0])=\(length)") | join(",")')" \
  "f32=9,q4_K=25,q6_K=5"
is "dry run queued nothing" "$(njobs)" 0
submit '{"model": "'"$LLAMA"'", "steps": [{"op": "quantize", "preset": "Q2_K_S"}], "dry_run": "yes"}'
expect_error "dry_run that is not a boolean" 400 invalid_recipe

# the job: weighted quantization equals llama-quantize --imatrix
submit '{"model": "'"$LLAMA"'", "steps": [{"op": "quantize", "preset": "Q4_K_M"}], "calibration": "'"$CAL"'"}'
is "Q4_K_M job with the calibration: 202, the calibration in its recipe" \
  "$R_STATUS $(jf "$R_BODY" .recipe.calibration)" "202 $CAL"
J1=$JOB_ID
wait_job "$J1" 60
is "it succeeded" "$(jf "$JOB" .state) $(jf "$JOB" .error)" "succeeded null"
curl -sf --max-time 30 -o "$T_TMP/q4km.gguf" "$CZ_URL/v1/jobs/$J1/artifact"
is "its size is the dry run's" "$(wc -c <"$T_TMP/q4km.gguf" | tr -d ' ')" "$(jf "$DRY" .bytes)"
if out=$(same_as_run "$T_TMP/q4km.gguf" Q4_K_M '["--imatrix", "tiny-llama-imatrix.gguf"]' 2>&1); then
  ok "every tensor equals llama-quantize Q4_K_M --imatrix"
else
  not_ok "every tensor equals llama-quantize Q4_K_M --imatrix"
fi
diag "$out"
is "quantize.imatrix.* keys as llama-quantize writes them" \
  "$(jq -r '.kv | "\(.["quantize.imatrix.file"]) \(.["quantize.imatrix.dataset"]) \(.["quantize.imatrix.entries_count"]) \(.["quantize.imatrix.chunks_count"])"' "$T_TMP/art.json")" \
  "tiny-imatrix.gguf synthetic 29 10"

# the .dat gives the same weights
submit '{"model": "'"$LLAMA"'", "steps": [{"op": "quantize", "preset": "Q6_K"}], "calibration": "'"$DAT"'"}'
J2=$JOB_ID
wait_job "$J2" 60
is "Q6_K job with the .dat calibration succeeded" "$(jf "$JOB" .state)" succeeded
curl -sf --max-time 30 -o "$T_TMP/q6k.gguf" "$CZ_URL/v1/jobs/$J2/artifact"
if out=$(same_as_run "$T_TMP/q6k.gguf" Q6_K '["--imatrix", "tiny-llama-imatrix.gguf"]' 2>&1); then
  ok "Q6_K with the .dat equals llama-quantize Q6_K --imatrix"
else
  not_ok "Q6_K with the .dat equals llama-quantize Q6_K --imatrix"
fi
diag "$out"

submit '{"model": "'"$LLAMA"'", "steps": [{"op": "quantize", "preset": "Q2_K_S"}], "calibration": "'"$CAL"'"}'
J3=$JOB_ID
wait_job "$J3" 60
is "Q2_K_S with a calibration runs" "$R_STATUS $(jf "$JOB" .state)" "202 succeeded"

# calibrations survive a restart; a job submitted before it still finds its calibration
cz_stop
cz_start "$DATA" --workers 1 || bail "cannot restart compressd"
req GET "/v1/calibrations/$CAL"
is "after a restart the calibration is still there" "$R_STATUS $(jf "$R_BODY" .entries)" "200 29"

# ---- the CLI ----

printf '{"steps": [{"op": "quantize", "preset": "Q4_K_M"}]}' >"$T_TMP/recipe.json"
"$CZ_BIN" compress --recipe "$T_TMP/recipe.json" --calibration "$IMATRIX" "$IN" "$T_TMP/cli.gguf" 2>"$T_TMP/cli.err"
if out=$(same_as_run "$T_TMP/cli.gguf" Q4_K_M '["--imatrix", "tiny-llama-imatrix.gguf"]' 2>&1); then
  ok "compress --calibration equals llama-quantize Q4_K_M --imatrix"
else
  not_ok "compress --calibration equals llama-quantize Q4_K_M --imatrix"
  diag "$(cat "$T_TMP/cli.err")"
fi
diag "$out"
if "$CZ_BIN" compress --dry-run --recipe "$T_TMP/recipe.json" --calibration "$IMATRIX" "$IN" \
    >"$T_TMP/plan.json" 2>"$T_TMP/plan.err"; then
  ok "compress --dry-run exits 0"
else
  not_ok "compress --dry-run exits 0"
  diag "$(cat "$T_TMP/plan.err")"
fi
is "compress --dry-run prints the plan and the size compress wrote" \
  "$(jq -r '"\(.tensors | length) \(.bytes)"' "$T_TMP/plan.json")" "39 $(wc -c <"$T_TMP/cli.gguf" | tr -d ' ')"
printf '{"steps": [{"op": "quantize", "preset": "Q2_K_S"}]}' >"$T_TMP/q2ks.json"
"$CZ_BIN" compress --recipe "$T_TMP/q2ks.json" "$IN" "$T_TMP/q2ks.gguf" 2>"$T_TMP/q2ks.err"
rc=$?
is "compress Q2_K_S without --calibration fails, naming the option" \
  "$rc $(grep -c -- '--calibration' "$T_TMP/q2ks.err")" "1 1"
"$CZ_BIN" compress --recipe "$T_TMP/recipe.json" --calibration "$IN" "$IN" "$T_TMP/x.gguf" 2>"$T_TMP/bad.err"
is "compress --calibration MODEL.gguf is refused" "$? $(grep -c invalid_metadata "$T_TMP/bad.err")" "1 1"

t_done
