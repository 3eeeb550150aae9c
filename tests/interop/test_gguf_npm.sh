#!/bin/sh
# test_gguf_npm: GGUF files that compressd writes are read by @huggingface/gguf (npm, pinned in
# tests/interop/package-lock.json), a parser nobody in this project wrote. Each file is made
# with `compressd compress`; gguf_dump.mjs prints what the package read, and check_gguf_npm.py
# compares every tensor's name, dims, dtype and offset and every KV (key, type, value, order)
# with expectations computed from the input file. Skipped without node (>= 18) and npm.
# The package is installed with `npm ci` into BUILDDIR/interop-node (the source tree may be
# read-only), once per lock file.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"
IDIR=$CZ_SRCDIR/tests/interop

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "1..0 # SKIP node and npm not found (apt-get install nodejs npm)"
  exit 0
fi
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)
if [ "${major:-0}" -lt 18 ]; then
  echo "1..0 # SKIP node $(node --version) is older than 18"
  exit 0
fi

ND=$CZ_BUILDDIR/interop-node
if ! cmp -s "$IDIR/package-lock.json" "$ND/package-lock.json" ||
   [ ! -f "$ND/node_modules/@huggingface/gguf/package.json" ]; then
  rm -rf "$ND"
  mkdir -p "$ND"
  cp "$IDIR/package.json" "$IDIR/package-lock.json" "$ND/"
  if ! (cd "$ND" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) >"$T_TMP/npm.log" 2>&1; then
    rm -f "$ND/package-lock.json" # try again next time
    if [ "${CI:-}" = true ]; then
      echo "1..1"
      not_ok "npm ci of tests/interop/package.json"
      diag "$(tail -20 "$T_TMP/npm.log")"
      exit 1
    fi
    echo "1..0 # SKIP npm ci failed (no registry?): $(tail -1 "$T_TMP/npm.log")"
    exit 0
  fi
fi
cp "$IDIR/gguf_dump.mjs" "$ND/"
ver=$(node -p 'require(process.argv[1]).version' "$ND/node_modules/@huggingface/gguf/package.json")
diag "@huggingface/gguf $ver on node $(node --version)"

# interop NAME INPUT TYPE: compress INPUT with {"op": "quantize", "type": TYPE} to GGUF, read the
# result with @huggingface/gguf, check it
interop() {
  _out=$T_TMP/$1.gguf
  printf '{"steps": [{"op": "quantize", "type": "%s"}], "output": {"format": "gguf"}}\n' "$3" >"$T_TMP/$1.recipe"
  if ! "$CZ_BIN" compress --recipe "$T_TMP/$1.recipe" "$2" "$_out" >"$T_TMP/$1.log" 2>&1; then
    not_ok "$1: compressd compress"
    diag "$(tail -5 "$T_TMP/$1.log")"
    not_ok "$1: KVs"
    return
  fi
  if ! (cd "$ND" && node gguf_dump.mjs "$_out") >"$T_TMP/$1.json" 2>"$T_TMP/$1.node.err"; then
    not_ok "$1: @huggingface/gguf reads the file"
    diag "$(head -c 1500 "$T_TMP/$1.node.err")"
    not_ok "$1: KVs"
    return
  fi
  "$PY" "$IDIR/check_gguf_npm.py" "$T_TMP/$1.json" "$2" "$_out" "$3" >"$T_TMP/$1.check" 2>&1
  for part in tensors kv; do
    line=$(grep "^$part: " "$T_TMP/$1.check")
    case $line in
      "$part: ok"*) ok "$1: @huggingface/gguf reads every $( [ $part = kv ] && echo KV || echo tensor) as expected ${line#*ok }" ;;
      *) not_ok "$1: $part as read by @huggingface/gguf"
         diag "$(sed -n "/^$part: /,/^[a-z]*: /p" "$T_TMP/$1.check" | head -22)" "$(grep -v '^ \|: ' "$T_TMP/$1.check" | head -20)" ;;
    esac
  done
}

interop "tiny-llama q8_0" "$CZ_DATA/tiny-llama-f16.gguf" q8_0

ST=$T_TMP/st-input.safetensors
st_write "$ST" '{"metadata": {"format": "pt"}, "tensors": [
  {"name": "model.embed_tokens.weight", "dtype": "F32", "shape": [40, 64]},
  {"name": "model.layers.0.input_layernorm.weight", "dtype": "BF16", "shape": [64]},
  {"name": "model.layers.0.mlp.up_proj.weight", "dtype": "BF16", "shape": [96, 64], "seed": 2},
  {"name": "model.layers.0.self_attn.rotary", "dtype": "F16", "shape": [2, 3, 32]},
  {"name": "lm_head.weight", "dtype": "F16", "shape": [40, 64], "seed": 3}]}' || bail "st_write failed"
interop "safetensors to f16" "$ST" f16
interop "safetensors to bf16" "$ST" bf16

KVG=$T_TMP/kv-input.gguf
"$PY" "$IDIR/make_kv_gguf.py" "$KVG" || bail "make_kv_gguf.py failed"
interop "every KV type, tokenizer, alignment 64, q8_0" "$KVG" q8_0

t_done
