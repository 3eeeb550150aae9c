#!/bin/sh
# parse-bench: how long opening (parsing and validating) a large model takes, and how much
# memory it needs, for GGUF and safetensors files of the same size and tensor count.
#
# usage: bench/parse-bench.sh [BUILD_DIR] [--keep]
#   BUILD_DIR  a configured build tree of this source (default build/release, configured and
#              built like `tools/setup.sh serve` does when missing); parse-bench.c is compiled
#              against its libczcore.a with -O2. A sanitizer build gives ASan figures.
#   --keep     keep the generated files (in $PARSE_BENCH_DIR, default /tmp/compressd-parse-bench)
#
# The files: a llama-like model of 48 layers (hidden 1024, FFN 3072, vocabulary 64000) in F16,
# 435 tensors, 1.57 GB, once as GGUF v3 and once as safetensors; the tensor data are holes of a
# sparse file (opening reads only the header; zeros or real weights parse the same).
# Measured: cz_model_open + cz_model_close, 20 times each, min/median/max; peak RSS of the
# process (/usr/bin/time -v when installed, else getrusage) against a run that opens nothing.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
BUILD=build/release
KEEP=0
for a in "$@"; do
  case $a in
    --keep) KEEP=1 ;;
    *) BUILD=$a ;;
  esac
done
if [ ! -f "$BUILD/libczcore.a" ]; then
  [ -x configure ] || autoreconf -fi >/dev/null
  mkdir -p "$BUILD"
  [ -f "$BUILD/Makefile" ] || (cd "$BUILD" && "$top/configure" -q)
  make -C "$BUILD" -j"$(nproc)" -s libczcore.a
fi
DIR=${PARSE_BENCH_DIR:-/tmp/compressd-parse-bench}
mkdir -p "$DIR"
BIN=$DIR/parse-bench
SAN=
grep -q -- '-fsanitize=address' "$BUILD/Makefile" && SAN="-fsanitize=address,undefined"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 $SAN -I"$top/core" bench/parse-bench.c "$BUILD/libczcore.a" \
  $(pkg-config --libs jansson lapacke openblas) -lpthread -lm -o "$BIN"

python3 - "$DIR" <<'PYEOF'
import json, os, struct, sys
out = sys.argv[1]
LAYERS, H, FFN, VOCAB = 48, 1024, 3072, 64000
t = [("token_embd.weight", [H, VOCAB])]           # ggml order: ne[0] is the row
for i in range(LAYERS):
    p = "blk.%d." % i
    t += [(p + "attn_norm.weight", [H]), (p + "attn_q.weight", [H, H]),
          (p + "attn_k.weight", [H, H]), (p + "attn_v.weight", [H, H]),
          (p + "attn_output.weight", [H, H]), (p + "ffn_norm.weight", [H]),
          (p + "ffn_gate.weight", [H, FFN]), (p + "ffn_up.weight", [H, FFN]),
          (p + "ffn_down.weight", [FFN, H])]
t += [("output_norm.weight", [H]), ("output.weight", [H, VOCAB])]

def nbytes(ne):
    n = 2
    for d in ne:
        n *= d
    return n

def pad(x, a=32):
    return (x + a - 1) // a * a

# GGUF v3, F16, llama.cpp's layout (each tensor padded to 32)
def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b
kv = gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama")
kv += gstr("llama.block_count") + struct.pack("<II", 4, LAYERS)
kv += gstr("general.file_type") + struct.pack("<II", 4, 1)
hdr = b"GGUF" + struct.pack("<IQQ", 3, len(t), 3) + kv
off = 0
for name, ne in t:
    hdr += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
    hdr += struct.pack("<IQ", 1, off)
    off = pad(off + nbytes(ne))
hdr += b"\0" * (pad(len(hdr)) - len(hdr))
with open(os.path.join(out, "model.gguf"), "wb") as f:
    f.write(hdr)
    f.truncate(len(hdr) + off)

# safetensors, F16, shapes outermost first, contiguous
h, off = {"__metadata__": {"format": "pt"}}, 0
for name, ne in t:
    n = nbytes(ne)
    h[name] = {"dtype": "F16", "shape": list(reversed(ne)), "data_offsets": [off, off + n]}
    off += n
j = json.dumps(h, separators=(",", ":")).encode()
j += b" " * (-len(j) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(j)) + j)
    f.truncate(8 + len(j) + off)
PYEOF

# peak RSS of one run (kB): /usr/bin/time -v when present, else the program's getrusage
peak() {
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -v "$BIN" "$@" 2>"$DIR/time.txt" >/dev/null
    sed -n 's/.*Maximum resident set size (kbytes): //p' "$DIR/time.txt"
  else
    "$BIN" "$@" | cut -d' ' -f8
  fi
}

base=$(peak "$DIR/model.gguf" 0)
printf '%-12s %8s %14s %9s %9s %9s %11s %11s\n' format tensors bytes min_ms median_ms max_ms peak_rss_kB "+baseline"
for f in model.gguf model.safetensors; do
  set -- $("$BIN" "$DIR/$f" 20)
  rss=$(peak "$DIR/$f" 1)
  printf '%-12s %8s %14s %9s %9s %9s %11s %11s\n' "$1" "$2" "$3" "$5" "$6" "$7" "$rss" "+$((rss - base))"
done
echo "baseline: a process that opens nothing peaks at $base kB; $(nproc) cores, $(uname -r)"
[ "$KEEP" = 1 ] || rm -f "$DIR/model.gguf" "$DIR/model.safetensors"
