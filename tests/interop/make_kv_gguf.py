#!/usr/bin/env python3
"""make_kv_gguf: writes a small GGUF v3 input with every KV value type (arrays of strings, of
floats, of arrays included), a tokenizer, general.alignment 64 and a few tensors, for the
interop test: compressd must carry all of it over, and @huggingface/gguf must read it back.
Usage: make_kv_gguf.py OUT.gguf   (standard library only, written from the format description)
"""
import struct
import sys

ALIGN = 64


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def gstr(s):
    b = s.encode()
    return u64(len(b)) + b


def kv(key, vtype, payload):
    return gstr(key) + u32(vtype) + payload


def arr(et, items):
    return u32(et) + u64(len(items)) + b"".join(items)


def pad(b):
    return b + b"\0" * (-len(b) % ALIGN)


kvs = [
    kv("general.architecture", 8, gstr("llama")),
    kv("general.name", 8, gstr("interop \u00e9\u00e8 \U0001F600")),
    kv("general.alignment", 4, u32(ALIGN)),
    kv("llama.block_count", 4, u32(1)),
    kv("llama.context_length", 4, u32(128)),
    kv("llama.embedding_length", 4, u32(64)),
    kv("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
    kv("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
    kv("test.u8", 0, b"\xfe"),
    kv("test.i8", 1, struct.pack("<b", -3)),
    kv("test.u16", 2, struct.pack("<H", 65535)),
    kv("test.i16", 3, struct.pack("<h", -32768)),
    kv("test.i32", 5, struct.pack("<i", -2147483648)),
    kv("test.bool", 7, b"\x01"),
    kv("test.u64", 10, u64(1 << 40)),
    kv("test.i64", 11, struct.pack("<q", -(1 << 50))),
    kv("test.f64", 12, struct.pack("<d", 0.1)),
    kv("test.empty_string", 8, gstr("")),
    kv("test.nested", 9, arr(9, [arr(5, [u32(1), u32(2)]), arr(5, [u32(3)])])),
    kv("tokenizer.ggml.model", 8, gstr("llama")),
    kv("tokenizer.ggml.tokens", 9, arr(8, [gstr(t) for t in ("<unk>", "<s>", "</s>", "a", "\u2581b")])),
    kv("tokenizer.ggml.scores", 9, arr(6, [struct.pack("<f", -float(i)) for i in range(5)])),
    kv("tokenizer.ggml.token_type", 9, arr(5, [struct.pack("<i", t) for t in (2, 3, 3, 1, 1)])),
    kv("tokenizer.ggml.bos_token_id", 4, u32(1)),
    kv("general.file_type", 4, u32(0)),
]
# (name, ne, ggml type, element bytes): F32 and F16 2-D weights, a 1-D norm
tensors = [("token_embd.weight", [64, 5], 0, 4), ("blk.0.attn_norm.weight", [64], 0, 4),
           ("blk.0.ffn_up.weight", [64, 96], 1, 2), ("output.weight", [64, 5], 0, 4)]
infos, data = b"", b""
for name, ne, typ, esize in tensors:
    n = 1
    for d in ne:
        n *= d
    infos += gstr(name) + u32(len(ne)) + b"".join(u64(d) for d in ne) + u32(typ) + u64(len(data))
    if typ == 0:
        body = struct.pack("<%df" % n, *[((i * 37) % 251 - 125) / 64.0 for i in range(n)])
    else:
        body = struct.pack("<%de" % n, *[((i * 37) % 251 - 125) / 64.0 for i in range(n)])
    data = pad(data + body)
head = b"GGUF" + u32(3) + u64(len(tensors)) + u64(len(kvs))
with open(sys.argv[1], "wb") as f:
    f.write(pad(head + b"".join(kvs) + infos) + data)
