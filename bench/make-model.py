#!/usr/bin/env python3
"""make-model.py: write a synthetic llama-like F16 model for benchmarks (standard library only).

The model has the tensor names and shapes of a TinyLlama-style network (hidden 2048, MLP
5632, vocabulary 32000, full multi-head attention): per layer four [2048, 2048] attention
matrices, [5632, 2048] gate and up and a [2048, 5632] down projection, two 1-D RMS norms;
plus the token embedding, the final norm and the output matrix. The number of layers is
chosen so that the file is about --size bytes (default 1.1e9: 8 layers, 1 084 MB).

Values are finite and spread like trained weights: a pool of about a million F16 numbers is
drawn once (mostly N(0, 0.02), with 0.5 % wider outliers; norms around 1.0), and every
tensor is the pool tiled with pseudo-random rotations, so that no two chunks line up the same
way. Writing is bytes slicing and file writes only, no per-element Python loop: a gigabyte
takes a few seconds, bounded by the disk. The output is deterministic for a given --seed.

Default output is safetensors (HF names: model.layers.N.self_attn.q_proj.weight, ...);
--gguf writes a GGUF v3 file instead (llama.cpp names: blk.N.attn_q.weight, ..., F16
tensors, general.architecture = llama and the llama.* hyperparameter keys).

usage: make-model.py [--size BYTES] [--layers N] [--seed S] [--gguf] OUT
       BYTES takes K, M, G suffixes (powers of 1000), e.g. 1.1G
"""

import argparse
import json
import os
import random
import struct
import sys

HIDDEN = 2048
INTERMEDIATE = 5632
VOCAB = 32000
HEADS = 32
POOL_ELEMS = 1_048_573  # a prime: tiles never line up with the 2048/5632 row lengths
F16 = 2                 # bytes per element
GGUF_ALIGN = 32
GGML_F16 = 1            # ggml type id
LLAMA_FTYPE_F16 = 1     # llama_ftype MOSTLY_F16


def parse_size(s):
    mult = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    s = s.strip().upper().rstrip("B")
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(float(s))


def make_pool(rng, mean, std, outlier_std):
    """POOL_ELEMS float16 values (little-endian bytes), drawn once."""
    vals = []
    gauss = rng.gauss
    for i in range(POOL_ELEMS):
        # 1 in 200 values from a wider distribution: real weight matrices have such outliers,
        # and they set the scale of their Q8_0 block
        v = gauss(mean, outlier_std if i % 200 == 0 else std)
        vals.append(v)
    rng.shuffle(vals)
    return struct.pack("<%de" % POOL_ELEMS, *vals)


def layer_tensors(n_layers, gguf):
    """[(name, shape outermost first, pool)] in file order."""
    h, m = HIDDEN, INTERMEDIATE
    t = []
    if gguf:
        t.append(("token_embd.weight", [VOCAB, h], "w"))
        for i in range(n_layers):
            p = "blk.%d." % i
            t += [(p + "attn_norm.weight", [h], "norm"),
                  (p + "attn_q.weight", [h, h], "w"),
                  (p + "attn_k.weight", [h, h], "w"),
                  (p + "attn_v.weight", [h, h], "w"),
                  (p + "attn_output.weight", [h, h], "w"),
                  (p + "ffn_norm.weight", [h], "norm"),
                  (p + "ffn_gate.weight", [m, h], "w"),
                  (p + "ffn_up.weight", [m, h], "w"),
                  (p + "ffn_down.weight", [h, m], "w")]
        t += [("output_norm.weight", [h], "norm"), ("output.weight", [VOCAB, h], "w")]
    else:
        t.append(("model.embed_tokens.weight", [VOCAB, h], "w"))
        for i in range(n_layers):
            p = "model.layers.%d." % i
            t += [(p + "input_layernorm.weight", [h], "norm"),
                  (p + "self_attn.q_proj.weight", [h, h], "w"),
                  (p + "self_attn.k_proj.weight", [h, h], "w"),
                  (p + "self_attn.v_proj.weight", [h, h], "w"),
                  (p + "self_attn.o_proj.weight", [h, h], "w"),
                  (p + "post_attention_layernorm.weight", [h], "norm"),
                  (p + "mlp.gate_proj.weight", [m, h], "w"),
                  (p + "mlp.up_proj.weight", [m, h], "w"),
                  (p + "mlp.down_proj.weight", [h, m], "w")]
        t += [("model.norm.weight", [h], "norm"), ("lm_head.weight", [VOCAB, h], "w")]
    return t


def nbytes(shape):
    n = F16
    for d in shape:
        n *= d
    return n


def write_data(f, size, pool2, rng):
    """size bytes: the pool (pool2 is it twice over) in rotated slices of one pool length."""
    plen = len(pool2) // 2
    left = size
    while left > 0:
        off = rng.randrange(POOL_ELEMS) * F16
        n = min(plen, left)
        f.write(pool2[off:off + n])
        left -= n


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, value):
    out = gguf_str(key) + struct.pack("<I", vtype)
    if vtype == 8:    # string
        return out + gguf_str(value)
    if vtype == 4:    # u32
        return out + struct.pack("<I", value)
    if vtype == 6:    # f32
        return out + struct.pack("<f", value)
    raise ValueError(vtype)


def pad(n, a):
    return (n + a - 1) // a * a


def gguf_header(tensors, n_layers):
    kvs = [gguf_kv("general.architecture", 8, "llama"),
           gguf_kv("general.name", 8, "compressd-bench-synthetic"),
           gguf_kv("llama.block_count", 4, n_layers),
           gguf_kv("llama.context_length", 4, 2048),
           gguf_kv("llama.embedding_length", 4, HIDDEN),
           gguf_kv("llama.feed_forward_length", 4, INTERMEDIATE),
           gguf_kv("llama.attention.head_count", 4, HEADS),
           gguf_kv("llama.attention.head_count_kv", 4, HEADS),
           gguf_kv("llama.rope.dimension_count", 4, HIDDEN // HEADS),
           gguf_kv("llama.attention.layer_norm_rms_epsilon", 6, 1e-5),
           gguf_kv("general.file_type", 4, LLAMA_FTYPE_F16)]
    infos = []
    off = 0
    for name, shape, _ in tensors:
        ne = list(reversed(shape))  # ggml order: the contiguous axis first
        infos.append(gguf_str(name) + struct.pack("<I", len(ne)) +
                     struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", GGML_F16, off))
        off = pad(off + nbytes(shape), GGUF_ALIGN)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + \
        b"".join(infos)
    return head + b"\0" * (pad(len(head), GGUF_ALIGN) - len(head))


def st_header(tensors):
    hdr = {"__metadata__": {"format": "pt", "generator": "compressd bench/make-model.py"}}
    off = 0
    for name, shape, _ in tensors:
        hdr[name] = {"dtype": "F16", "shape": shape, "data_offsets": [off, off + nbytes(shape)]}
        off += nbytes(shape)
    js = json.dumps(hdr, separators=(",", ":")).encode()
    js += b" " * (pad(len(js), 8) - len(js))
    return struct.pack("<Q", len(js)) + js


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--size", default="1.1G", help="target file size (default 1.1G)")
    ap.add_argument("--layers", type=int, help="number of layers (overrides --size)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--gguf", action="store_true", help="write GGUF v3 instead of safetensors")
    a = ap.parse_args()

    emb = 2 * nbytes([VOCAB, HIDDEN]) + nbytes([HIDDEN])
    per_layer = sum(nbytes(s) for _, s, _ in layer_tensors(1, False)) - emb
    layers = a.layers if a.layers else max(1, round((parse_size(a.size) - emb) / per_layer))
    if layers < 1:
        sys.exit("make-model.py: --layers must be at least 1")
    tensors = layer_tensors(layers, a.gguf)

    rng = random.Random(a.seed)
    pools = {"w": make_pool(rng, 0.0, 0.02, 0.08), "norm": make_pool(rng, 1.0, 0.05, 0.05)}
    pools = {k: v + v for k, v in pools.items()}

    tmp = a.out + ".part"
    with open(tmp, "wb") as f:
        if a.gguf:
            f.write(gguf_header(tensors, layers))
            for name, shape, pool in tensors:
                n = nbytes(shape)
                write_data(f, n, pools[pool], rng)
                f.write(b"\0" * (pad(n, GGUF_ALIGN) - n))
        else:
            f.write(st_header(tensors))
            for name, shape, pool in tensors:
                write_data(f, nbytes(shape), pools[pool], rng)
    os.replace(tmp, a.out)
    params = sum(nbytes(s) for _, s, _ in tensors) // F16
    print("%s: %s, %d layers, %d tensors, %d parameters, %d bytes" %
          (a.out, "gguf" if a.gguf else "safetensors", layers, len(tensors), params,
           os.path.getsize(a.out)))


if __name__ == "__main__":
    main()
