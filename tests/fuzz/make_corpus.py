#!/usr/bin/env python3
"""make_corpus: (re)writes the fuzzers' seed corpus under tests/fuzz/corpus/<harness>/.

Usage: tests/fuzz/make_corpus.py [OUTDIR]   (default: tests/fuzz/corpus beside this script)

Seeds are small valid files of both formats (every dtype, metadata, nested GGUF arrays, empty
and scalar tensors, non-default alignment) and every hardening case of tests/formats/make_cases.py
that is at most 4 KiB. fuzz_st_header gets the JSON headers of the safetensors seeds. Files are
named by the SHA-1 of their content, as libFuzzer names what it adds. The output is committed;
run this again only to change the seeds.
"""

import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "formats"))
import make_cases as mc  # noqa: E402

MAX_SEED = 4096

ST_BITS = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8,
           "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16,
           "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64,
           "U64": 64, "F64": 64, "C64": 64}


def st_valid(tensors, metadata=None, pad_to=8):
    """tensors: [(name, dtype, shape)] -> a valid safetensors file with patterned data"""
    import json
    hdr, off = {}, 0
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name, dt, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        nb = n * ST_BITS[dt] // 8
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nb]}
        off += nb
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % pad_to)
    return struct.pack("<Q", len(h)) + h + bytes((i * 7 + 1) & 0xFF for i in range(off))


def st_seeds():
    s = [
        st_valid([]),
        st_valid([], {"format": "pt"}),
        st_valid([("w", "F32", [2, 3]), ("b", "F32", [3])], {"format": "pt", "k": ""}),
        st_valid([("scalar", "U8", []), ("empty", "F16", [0, 5]), ("\u00e9t\u00e9", "I64", [1, 2])]),
        st_valid([("f4", "F4", [2, 3]), ("f6", "F6_E2M3", [4]), ("f6b", "F6_E3M2", [4, 2])]),
        st_valid([(dt.lower() + ".w", dt, [2, 2]) for dt in ST_BITS if ST_BITS[dt] >= 8]),
        st_valid([("model.layers.0.self_attn.q_proj.weight", "BF16", [8, 8]),
                  ("model.layers.0.input_layernorm.weight", "BF16", [8]),
                  ("lm_head.weight", "F16", [4, 8])], {"format": "pt"}, pad_to=1),
    ]
    for cid, data, _status, _code, _name, _desc in mc.s_cases():
        if len(data) <= MAX_SEED:
            s.append(data)
    return s


def gguf_valid():
    u32, u64, gstr, tinfo = mc.u32, mc.u64, mc.gstr, mc.tinfo
    kvs = [
        mc.kv_str("general.architecture", "llama"),
        mc.kv_str("general.name", "seed \u00e9"),
        mc.kv_u32("llama.block_count", 1),
        gstr("test.f32") + u32(6) + struct.pack("<f", 1.5),
        gstr("test.bool") + u32(7) + b"\x01",
        gstr("test.i64") + u32(11) + u64(-5),
        gstr("test.f64") + u32(12) + struct.pack("<d", 2.5),
        gstr("test.u8") + u32(0) + b"\x07",
        gstr("test.i16") + u32(3) + b"\xff\xff",
        mc.kv_arr("test.strings", 8, [gstr("a"), gstr("bc"), gstr("")]),
        gstr("test.nested") + u32(9) + u32(9) + u64(2) + u32(5) + u64(2) + u32(1) + u32(2) +
        u32(5) + u64(1) + u32(3),
        mc.kv_arr("test.empty", 0, []),
        mc.kv_str("tokenizer.ggml.model", "llama"),
        mc.kv_arr("tokenizer.ggml.tokens", 8, [gstr("<s>"), gstr("a")]),
        mc.kv_arr("tokenizer.ggml.scores", 6, [struct.pack("<f", 0.0)] * 2),
        mc.kv_arr("tokenizer.ggml.token_type", 5, [u32(1)] * 2),
    ]
    infos = [tinfo("tok", [8, 3], 1, 0), tinfo("norm", [8], 0, 64), tinfo("q", [64, 2], 8, 96),
             tinfo("z", [0, 4], 0, 256), tinfo("s", [1], 26, 256)]
    data = mc.pad(b"\x01" * 48) + b"\x02" * 32 + mc.pad(b"\x03" * 136) + b"\x04" * 4
    return mc.gguf(kvs, infos, data)


def gguf_seeds():
    s = [
        gguf_valid(),
        mc.gguf([mc.ARCH], [mc.W], mc.W_DATA),
        mc.gguf([mc.ARCH], [mc.W], mc.W_DATA, version=2),
        mc.gguf([], [], b""),
        mc.gguf([mc.ARCH, mc.kv_u32("general.alignment", 64)],
                [mc.tinfo("a", [8], 0, 0), mc.tinfo("b", [8], 0, 64)],
                mc.W_DATA + b"\0" * 32 + mc.W_DATA, align=64),
        mc.gguf([mc.ARCH], [mc.tinfo("k", [256, 1], 12, 0)], b"\x05" * 144),  # q4_K
        mc.gguf([mc.ARCH], [mc.tinfo("b", [8], 0, 32), mc.tinfo("a", [8], 0, 0)],
                mc.W_DATA * 2),
    ]
    for cid, data, _status, _code, _name, _desc in mc.g_cases():
        if len(data) <= MAX_SEED:
            s.append(data)
    return s


def write(outdir, harness, seeds):
    d = os.path.join(outdir, harness)
    os.makedirs(d, exist_ok=True)
    for data in seeds:
        with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    st = st_seeds()
    write(out, "fuzz_safetensors", st)
    hdrs = []
    for data in st:
        if len(data) >= 8:
            n = struct.unpack("<Q", data[:8])[0]
            if n <= len(data) - 8:
                hdrs.append(data[8:8 + n])
    write(out, "fuzz_st_header", hdrs)
    write(out, "fuzz_gguf", gguf_seeds())


if __name__ == "__main__":
    main()
