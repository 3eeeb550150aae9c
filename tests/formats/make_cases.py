#!/usr/bin/env python3
"""make_cases: writes one malformed (or deliberately odd) file per variant of each S and G case of
hardening.md section 8, and a manifest that says what the daemon must answer.

Usage: make_cases.py OUTDIR
Writes OUTDIR/<id>-<n>.bin and OUTDIR/manifest.tsv with one line per file:
    id  file  status  code  name  description
  status  the HTTP status POST /v1/models must answer (201: accepted)
  code    the error.code it must carry ("-" when accepted)
  name    a tensor (or key) name the error message must contain, or that the accepted model's
          tensor list must contain; "-" when none applies
The expected codes are those of core/cz_err.h (the stable wire codes); where hardening.md
proposes another spelling, the table's code is the contract.

Standard library only; the files are built from the format descriptions, not from compressd's
code.
"""

import os
import struct
import sys

U64_MAX = (1 << 64) - 1

# ---- safetensors ----


def st(header, data=b"", length=None):
    """A safetensors file: LE u64 header length (the real one unless given), header, data."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def st_tensor(name, dtype, shape, begin, end):
    return '"%s":{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}' % (
        name, dtype, "[" + ",".join(str(d) for d in shape) + "]", begin, end)


ONE = st_tensor("w", "F32", [2, 2], 0, 16)  # the one valid tensor most cases start from
ONE_DATA = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)


def s_cases():
    c = []
    add = lambda *a: c.append(a)  # noqa: E731  (id, bytes, status, code, name, description)

    for n in (0, 1, 7):
        add("S1", b"\x01" * n, 422, "header_too_small", "-", "%d-byte body" % n)
    for n in (1 << 63, U64_MAX, 100_000_001):
        add("S2", st("{}", length=n), 413, "header_too_large", "-", "header length %d" % n)
    add("S3", st("{" + " " * 200, length=100_000_000), 422, "invalid_header_length", "-",
        "header length 100000000, body of 209 bytes")
    add("S4", st("{}", length=U64_MAX - 7), 413, "header_too_large", "-",
        "header length 2^64-8 (8+N wraps)")
    for bad, what in ((b"\xff", "0xFF"), (b"\xc0\xaf", "overlong C0 AF"),
                      (b"\xed\xa0\x80", "CESU surrogate ED A0 80")):
        h = b'{"w' + bad + b'":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
        add("S5", st(h, ONE_DATA), 422, "invalid_utf8", "-", what)
    for h in ("[]", '"x"', "1"):
        add("S6", st(h), 422, "invalid_header", "-", "header %s" % h)
    add("S7", st("\t\n {" + ONE + "}", ONE_DATA), 201, "-", "w", "leading whitespace")
    add("S7", st("{" + ONE + "}" + " " * 13, ONE_DATA), 201, "-", "w", "trailing 0x20 padding")
    for h in ("{} x", "{}{}"):
        add("S8", st(h), 422, "invalid_header", "-", "header %r" % h)
    add("S9", st("{" + ONE + "," + ONE + "}", ONE_DATA), 422, "duplicate_key", "-",
        "same tensor key twice, same offsets")
    add("S9", st("{" + ONE + "," + st_tensor("w", "F32", [2, 2], 16, 32) + "}", ONE_DATA * 2),
        422, "duplicate_key", "-", "same tensor key twice, different offsets")
    for v, what in (('{"a":1}', "a number"), ('{"a":["x"]}', "an array"),
                    ('{"a":{"b":"c"}}', "a nested object")):
        add("S10", st('{"__metadata__":' + v + "," + ONE + "}", ONE_DATA), 422,
            "invalid_metadata", "a", "__metadata__ value is " + what)
    add("S10", st('{"__metadata__":"x",' + ONE + "}", ONE_DATA), 422, "invalid_metadata",
        "__metadata__", "__metadata__ is a string")
    for dt in ("F128", "f32", ""):
        add("S11", st("{" + st_tensor("w", dt, [2, 2], 0, 16) + "}", ONE_DATA), 422,
            "unknown_dtype", "w", "dtype %r" % dt)
    # data_offsets that are not [begin, end] of non-negative integers: compressd's code for a
    # malformed field is invalid_header (the value never reaches the offset checks)
    for off, what in (("[0]", "1 item"), ("[0,8,16]", "3 items"), ("[-16,0]", "a negative item"),
                      ("[0,16.0]", "a float"), ('[0,"16"]', "a string")):
        add("S12", st('{"w":{"dtype":"F32","shape":[2,2],"data_offsets":%s}}' % off, ONE_DATA),
            422, "invalid_header", "w", "data_offsets " + what)
    add("S12", st('{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,9223372036854775808]}}',
                  ONE_DATA), 422, "invalid_header", "-", "data_offsets item 2^63 (too big for JSON)")
    add("S13", st("{" + st_tensor("w", "F32", [2, 2], 4, 20) + "}", b"\0" * 20), 422,
        "invalid_offsets", "w", "offsets not starting at 0")
    add("S13", st("{" + st_tensor("a", "F32", [2, 2], 0, 16) + "," +
                  st_tensor("w", "F32", [2, 2], 20, 36) + "}", b"\0" * 36), 422,
        "invalid_offsets", "w", "a gap between two tensors")
    add("S13", st("{" + st_tensor("a", "F32", [2, 2], 0, 16) + "," +
                  st_tensor("w", "F32", [2, 2], 8, 24) + "}", b"\0" * 24), 422,
        "invalid_offsets", "w", "overlapping tensors")
    add("S13", st("{" + st_tensor("a", "F32", [0], 0, 0) + "," +
                  st_tensor("w", "F32", [2, 2], 16, 0) + "}", b""), 422,
        "invalid_offsets", "w", "end before begin")
    add("S14", st("{" + st_tensor("w", "F32", [2, 3], 0, 16) + "}", ONE_DATA), 422,
        "size_mismatch", "w", "F32 [2,3] in 16 bytes")
    add("S15", st("{" + st_tensor("w", "U8", [4194305, 4194305, 211106198978564], 0, 16) + "}",
                  ONE_DATA), 422, "size_overflow", "w", "shape product overflows u64")
    add("S16", st("{" + st_tensor("w", "F4", [3], 0, 2) + "}", b"\0\0"), 422,
        "misaligned_slice", "w", "F4 [3]: 12 bits")
    zip_tail = b"PK\x03\x04" + b"\x14\x00" + b"\0" * 22 + b"PK\x05\x06" + b"\0" * 18
    add("S17", st("{" + ONE + "}", ONE_DATA + zip_tail), 422, "trailing_data", "-",
        "a ZIP appended")
    add("S17", st("{" + ONE + "}", ONE_DATA + b"%PDF-1.4\n%%EOF\n"), 422, "trailing_data", "-",
        "a PDF appended")
    add("S18", st("{" + ONE + "}", ONE_DATA[:11]), 422, "truncated", "-",
        "data cut 5 bytes short")
    add("S19", st("{" + st_tensor("w", "F32", [4, 0], 0, 0) + "}"), 201, "-", "w",
        "zero-dimension tensor")
    add("S19", st("{" + st_tensor("w", "F32", [], 0, 4) + "}", ONE_DATA[:4]), 201, "-", "w",
        "0-rank scalar")
    add("S19", st("{}"), 201, "-", "-", "no tensors at all")
    nan_inf = struct.pack("<4I", 0x7FC00000, 0x7F800000, 0xFF800000, 0x00000001)
    add("S20", st("{" + ONE + "}", nan_inf), 201, "-", "w", "NaN, +Inf, -Inf, a subnormal (F32)")
    # S21: limits. 1,000,001 one-byte tensors (above the 1,000,000 cap), a 5 MB name, rank 33.
    n = 1_000_001
    ents = ",".join('"t%d":{"dtype":"U8","shape":[1],"data_offsets":[%d,%d]}' % (i, i, i + 1)
                    for i in range(n))
    add("S21", st("{" + ents + "}", b"\0" * n), 422, "too_many_tensors", "1000000",
        "1000001 one-byte tensors")
    big = "n" * (5 << 20)
    add("S21", st("{" + st_tensor(big, "F32", [2, 2], 0, 16) + "}", ONE_DATA), 422,
        "unsupported", "4096", "a 5 MB tensor name")
    add("S21", st("{" + st_tensor("w", "F32", [1] * 29 + [2, 2, 1, 1], 0, 16) + "}", ONE_DATA),
        422, "unsupported", "w", "rank 33")
    deep = "[" * 100_000 + "]" * 100_000
    add("S22", st('{"w":{"dtype":"F32","shape":' + deep + ',"data_offsets":[0,16]}}', ONE_DATA),
        422, "invalid_header", "-", "10^5 nested arrays in a tensor entry")
    add("S23", st('{"w\\u0000x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}', ONE_DATA),
        422, "invalid_header", "-", "a key with \\u0000")
    add("S23", st("{" + st_tensor("../../etc/passwd", "F32", [2, 2], 0, 16) + "}", ONE_DATA),
        201, "-", "../../etc/passwd", "tensor named ../../etc/passwd")
    add("S23", st("{" + st_tensor("'; DROP TABLE models; --", "F32", [2, 2], 0, 16) + "}",
                  ONE_DATA), 201, "-", "'; DROP TABLE models; --", "tensor named like SQL")
    tb10 = 10 * 10**12 // 4 * 4
    add("S24", st("{" + st_tensor("w", "F32", [tb10 // 4], 0, tb10) + "}", b"\0" * 1000), 422,
        "truncated", "-", "header declares 10 TB, body 1 KB")
    return c


# ---- GGUF ----

T_F32, T_F16, T_Q8_0 = 0, 1, 8
V_U8, V_I8, V_U32, V_I32, V_F32, V_STRING, V_ARRAY = 0, 1, 4, 5, 6, 8, 9


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & U64_MAX)


def gstr(s):
    if isinstance(s, str):
        s = s.encode()
    return u64(len(s)) + s


def head(n_tensors, n_kv, version=3, magic=b"GGUF"):
    return magic + u32(version) + u64(n_tensors) + u64(n_kv)


def kv_u32(key, v):
    return gstr(key) + u32(V_U32) + u32(v)


def kv_str(key, s):
    return gstr(key) + u32(V_STRING) + gstr(s)


def kv_arr(key, et, items):
    """items: already serialized elements"""
    return gstr(key) + u32(V_ARRAY) + u32(et) + u64(len(items)) + b"".join(items)


def tinfo(name, ne, typ, offset, n_dims=None):
    return (gstr(name) + u32(len(ne) if n_dims is None else n_dims) +
            b"".join(u64(d) for d in ne) + u32(typ) + u64(offset))


def pad(b, align=32):
    return b + b"\0" * (-len(b) % align)


def gguf(kvs, infos, data, n_tensors=None, n_kv=None, version=3, magic=b"GGUF", align=32):
    h = head(len(infos) if n_tensors is None else n_tensors,
             len(kvs) if n_kv is None else n_kv, version, magic)
    return pad(h + b"".join(kvs) + b"".join(infos), align) + data


ARCH = kv_str("general.architecture", "llama")
W = tinfo("w", [8], T_F32, 0)  # one F32 [8] tensor: 32 bytes at 0
W_DATA = struct.pack("<8f", *range(8))


def g_cases():
    c = []
    add = lambda *a: c.append(a)  # noqa: E731

    # G1: without the magic the file is detected as safetensors, whose length prefix (the
    # magic and version bytes read as a u64) is then far above the cap
    for m in (b"GGUX", b"gguf", b"FUGG"):
        add("G1", gguf([ARCH], [W], W_DATA, magic=m), 413, "header_too_large", "-",
            "magic %r" % m.decode())
    for v in (0, 1, 4, 0x03000000):
        add("G1", gguf([ARCH], [W], W_DATA, version=v), 422, "unsupported_version", "-",
            "version %d" % v)
    add("G2", gguf([ARCH], [W], W_DATA, n_tensors=U64_MAX), 422, "too_many_tensors", "-",
        "n_tensors 2^64-1")
    add("G2", gguf([ARCH], [W], W_DATA, n_kv=U64_MAX), 422, "invalid_kv", "-", "n_kv 2^64-1")
    add("G3", head(0, 1) + u64(U64_MAX) + b"k" * 64, 422, "truncated", "-", "key length 2^64-1")
    add("G3", head(0, 1) + u64(1000) + b"k" * 64, 422, "truncated", "-",
        "key length beyond the file")
    add("G3", head(0, 1) + gstr("k") + u32(V_STRING) + u64(U64_MAX) + b"v" * 64, 422,
        "truncated", "-", "string value length 2^64-1")
    add("G3", gguf([gstr("") + u32(V_U32) + u32(1)], [W], W_DATA), 422, "invalid_kv", "-",
        "empty key")
    add("G4", head(0, 1) + gstr("arr") + u32(V_ARRAY) + u32(V_U8) + u64(U64_MAX) + b"\0" * 64,
        422, "truncated", "arr", "U8 array of 2^64-1 elements")
    add("G4", head(0, 1) + gstr("arr") + u32(V_ARRAY) + u32(V_ARRAY) + u64(1 << 62) +
        b"\0" * 64, 422, "truncated", "arr", "array of 2^62 arrays")
    add("G4", head(0, 1) + gstr("arr") + u32(V_ARRAY) + u32(V_STRING) + u64(1 << 60) +
        b"\0" * 64, 422, "truncated", "arr", "string array of 2^60 elements")
    for et in (13, 0xFFFFFFFF):
        add("G4", head(0, 1) + gstr("arr") + u32(V_ARRAY) + u32(et) + u64(1) + b"\0" * 64,
            422, "invalid_kv", "arr", "array element type %d" % et)
    for nd in (5, 0xFFFFFFFF):
        add("G5", gguf([ARCH], [tinfo("w", [1, 1, 1, 1, 8], T_F32, 0, n_dims=nd)], W_DATA),
            422, "invalid_tensor_info", "w", "n_dims %d" % nd)
    add("G5", gguf([ARCH], [tinfo("w", [8, U64_MAX], T_F32, 0)], W_DATA), 422,
        "invalid_tensor_info", "w", "ne[1] = -1")
    add("G5", gguf([ARCH], [tinfo("w", [8, 0, 1 << 62], T_F32, 0)], b""), 201, "-", "w",
        "ne[1] = 0: an empty tensor, no division by zero")
    add("G5", gguf([ARCH], [tinfo("w", [0x7FFFFFFFFFFFFFC0, 2], T_F32, 0)], W_DATA), 422,
        "size_overflow", "w", "element count overflows int64")
    add("G5", gguf([ARCH], [tinfo("w", [1 << 62], T_F32, 0)], W_DATA), 422, "size_overflow",
        "w", "elements fit, byte size overflows")
    add("G5", gguf([ARCH], [tinfo("w", [16, 2], T_Q8_0, 0)], b"\0" * 64), 422,
        "invalid_tensor_info", "w", "q8_0 row of half a block")
    for t in (4, 40, 1000, 0xFFFFFFFF):
        add("G6", gguf([ARCH], [tinfo("w", [32], t, 0)], b"\0" * 128), 422, "unknown_dtype",
            "w", "tensor type %d" % t)
    for a in (0, 13, 1 << 31):
        add("G7", gguf([ARCH, kv_u32("general.alignment", a)], [W], W_DATA), 422,
            "invalid_alignment", "-", "general.alignment %d" % a)
    add("G7", gguf([ARCH, gstr("general.alignment") + u32(V_I32) + u32(32)], [W], W_DATA), 422,
        "invalid_alignment", "-", "general.alignment of type INT32")
    add("G8", gguf([ARCH], [tinfo("w", [8], T_F32, 16)], W_DATA * 2), 422, "invalid_offsets",
        "w", "offset 16 with alignment 32")
    add("G8", gguf([ARCH], [tinfo("a", [16], T_F32, 0), tinfo("w", [8], T_F32, 32)],
                   W_DATA * 3), 422, "invalid_offsets", "-", "overlapping tensors")
    add("G8", gguf([ARCH], [W], W_DATA[:16]), 422, "truncated", "w",
        "tensor beyond the end of the file")
    add("G8", gguf([ARCH], [tinfo("w", [8], T_F32, U64_MAX - 31)], W_DATA), 422,
        "invalid_offsets", "w", "offset near 2^64, not where the data section starts")
    add("G8", gguf([ARCH], [tinfo("a", [0x7FFFFFFFFFFFFFC0], 24, 0),
                            tinfo("w", [0x7FFFFFFFFFFFFFC0], 24, 0x7FFFFFFFFFFFFFC0)], W_DATA),
        422, "truncated", "-", "DATA_MEM_SIZE_OVERFLOW pair (2 x 2^63-64 bytes of I8)")
    # ggml's gguf.cpp demands each offset at the padded end of the previous tensor, in info
    # order (cz_gguf.c place_tensors; test_formats' test_gguf_offset_rule).
    add("G8", gguf([ARCH], [tinfo("w", [8], T_F32, 64)], W_DATA * 3), 422, "invalid_offsets",
        "w", "non-contiguous (a gap before the first tensor)")
    add("G8", gguf([ARCH], [tinfo("b", [8], T_F32, 32), tinfo("a", [8], T_F32, 0)],
                   W_DATA * 2), 422, "invalid_offsets", "b", "out of order (disjoint, but not in info order)")
    add("G9", gguf([ARCH, ARCH], [W], W_DATA), 422, "duplicate_key", "general.architecture",
        "a key twice")
    add("G9", gguf([ARCH], [W, tinfo("w", [8], T_F32, 32)], W_DATA * 2), 422,
        "duplicate_tensor", "w", "a tensor name twice")
    add("G9", gguf([ARCH], [tinfo("n" * 64, [8], T_F32, 0)], W_DATA), 422,
        "invalid_tensor_info", "-", "a 64-byte tensor name")
    toks = [gstr(t) for t in ("<s>", "</s>", "a")]
    f32s = [struct.pack("<f", 0.0)] * 3
    i32s = [u32(1)] * 3
    tok_ok = [kv_str("tokenizer.ggml.model", "llama"),
              kv_arr("tokenizer.ggml.tokens", V_STRING, toks)]
    add("G10", gguf([ARCH] + tok_ok + [kv_arr("tokenizer.ggml.scores", V_I8, [b"\0"] * 3)],
                    [W], W_DATA), 422, "invalid_kv", "tokenizer.ggml.scores",
        "scores as INT8[3] (read as float[3] by llama.cpp)")
    add("G10", gguf([ARCH] + tok_ok + [kv_arr("tokenizer.ggml.token_type", V_F32, f32s)],
                    [W], W_DATA), 422, "invalid_kv", "tokenizer.ggml.token_type",
        "token_type as FLOAT32")
    add("G10", gguf([ARCH, kv_arr("tokenizer.ggml.tokens", V_U8, [b"a", b"b"])], [W], W_DATA),
        422, "invalid_kv", "tokenizer.ggml.tokens", "tokens as UINT8")
    add("G10", gguf([ARCH] + tok_ok + [kv_arr("tokenizer.ggml.scores", V_F32, f32s[:2])],
                    [W], W_DATA), 422, "invalid_kv", "tokenizer.ggml.scores",
        "2 scores for 3 tokens")
    add("G10", gguf([ARCH] + tok_ok + [kv_arr("tokenizer.ggml.scores", V_F32, f32s),
                                       kv_arr("tokenizer.ggml.token_type", V_I32, i32s),
                                       kv_arr("tokenizer.ggml.merges", V_STRING, [gstr("a b")])],
                    [W], W_DATA), 201, "-", "w", "well-typed tokenizer arrays are accepted")
    return c


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seq = {}
    with open(os.path.join(out, "manifest.tsv"), "w") as man:
        for cid, data, status, code, name, desc in s_cases() + g_cases():
            seq[cid] = seq.get(cid, 0) + 1
            fn = "%s-%d.bin" % (cid, seq[cid])
            with open(os.path.join(out, fn), "wb") as f:
                f.write(data)
            for field in (name, desc):
                assert "\t" not in field and "\n" not in field
            man.write("\t".join((cid, fn, str(status), code, name, desc)) + "\n")


if __name__ == "__main__":
    main()
