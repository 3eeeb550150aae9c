#!/bin/sh
# test_cli_hash: the CLI's input digest. By default `compressd compress` hashes the input on a
# thread beside the pipeline and writes the SHA-256 into the report and, for safetensors, the
# output's metadata (compressd.source_sha256); --input-sha256 HEX passes a digest the caller already has instead
# (written as given, lower-cased) and leaves everything else byte-identical. A GGUF output
# carries no compressd keys (llama-quantize's bytes), so the metadata is checked on
# safetensors; a malformed one
# is a usage error that writes nothing. Inputs: the tiny GGUF and its tensors as safetensors.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

W=$T_TMP/w
mkdir -p "$W"
printf '{"steps": [{"op": "quantize", "type": "q8_0"}]}\n' > "$W/gguf.json"
printf '{"steps": [{"op": "quantize", "scheme": "int8"}]}\n' > "$W/safetensors.json"

# meta FILE: compressd.source_sha256 from the output's metadata, read by the independent reader
meta() {
  "$PY" - "$CZ_TOOLS" "$1" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import gguf_read as g
m = g.load(sys.argv[2])
print(m.kv.get("compressd.source_sha256", "") if m.format == "gguf" else
      (m.metadata or {}).get("compressd.source_sha256", ""))
EOF
}

# a safetensors input: the GGUF's tensors as dense F16
"$CZ_BIN" decompress "$CZ_DATA/tiny-llama-f16.gguf" "$W/tiny-f16.safetensors" --dtype f16 \
  2>"$W/dec.err" || bail "decompress: $(cat "$W/dec.err")"

for IN in "$CZ_DATA/tiny-llama-f16.gguf" "$W/tiny-f16.safetensors"; do
  ext=${IN##*.}
  base=$(basename "$IN")
  R=$W/$ext.json
  want=$(sha256_of "$IN")
  if "$CZ_BIN" compress --recipe "$R" --report "$W/a.json" "$IN" "$W/a.$ext" 2>"$W/a.err"; then
    is "$base: the report's input.sha256 is sha256sum's" "$(jq -r .input.sha256 "$W/a.json")" "$want"
    if [ "$ext" = safetensors ]; then
      is "$base: the output's compressd.source_sha256 is sha256sum's" "$(meta "$W/a.$ext")" "$want"
    fi
  else
    not_ok "$base: compress"
    diag "$(cat "$W/a.err")"
  fi
  upper=$(printf '%s' "$want" | tr a-f A-F)
  if "$CZ_BIN" compress --recipe "$R" --report "$W/b.json" --input-sha256 "$upper" \
    "$IN" "$W/b.$ext" 2>"$W/b.err"; then
    is "$base: --input-sha256 (upper case) is written lower-cased to the report" \
      "$(jq -r .input.sha256 "$W/b.json")" "$want"
    check "$base: with the digest given, the output is byte-identical" cmp -s "$W/a.$ext" "$W/b.$ext"
  else
    not_ok "$base: compress --input-sha256"
    diag "$(cat "$W/b.err")"
  fi
  other=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  "$CZ_BIN" compress --recipe "$R" --report "$W/c.json" --input-sha256 "$other" \
    "$IN" "$W/c.$ext" 2>"$W/c.err"
  is "$base: a given digest is trusted as given (report)" "$(jq -r .input.sha256 "$W/c.json")" "$other"
  if [ "$ext" = safetensors ]; then
    is "$base: a given digest is trusted as given (metadata)" "$(meta "$W/c.$ext")" "$other"
  fi
done

IN=$CZ_DATA/tiny-llama-f16.gguf
for bad in 0123 "$(printf 'g%.0s' $(seq 64))" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"; do
  rm -f "$W/bad.gguf" "$W/bad.gguf.tmp"
  "$CZ_BIN" compress --recipe "$W/gguf.json" --input-sha256 "$bad" "$IN" "$W/bad.gguf" 2>"$W/bad.err"
  rc=$?
  is "--input-sha256 '$(printf '%.12s' "$bad")...' (${#bad} chars) is a usage error" "$rc" 2
  check "  ... and writes nothing" test ! -e "$W/bad.gguf" -a ! -e "$W/bad.gguf.tmp"
done

t_done
