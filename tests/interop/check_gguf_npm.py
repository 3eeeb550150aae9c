#!/usr/bin/env python3
"""check_gguf_npm: compares what @huggingface/gguf read from a GGUF that compressd wrote
(gguf_dump.mjs's JSON) with what the file must hold.

Usage: check_gguf_npm.py NODE_JSON INPUT OUTPUT TYPE
  INPUT   the model compressd read (GGUF or safetensors)
  OUTPUT  the GGUF compressd wrote with `compress` and a {"op": "quantize", "type": TYPE} recipe
  TYPE    the recipe's type (q8_0, f16, ...)

The expectations are computed here from the input (read with tests/tools/gguf_read.py) and the
format's rules, not taken from compressd:
  - tensors: the input's, in its order, same names and dimensions (ggml order); 2-D tensors
    become TYPE, the others keep their type; each tensor's offset is the previous one's end
    padded to the alignment (the input's general.alignment, else 32), starting at 0; the data
    section starts at the end of the tensor infos padded to the alignment, and the file ends at
    the padded end of the last tensor;
  - KVs: the input's, in order, with the same types and values, except general.file_type and
    general.quantization_version, which come last: quantization_version 2 for a block type,
    then file_type (llama_ftype of TYPE).
Prints one line per check ("tensors: ok", "kv: ok", or the differences) and exits 1 on any.
"""

import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import gguf_read  # noqa: E402

FTYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9,
         "q2_K": 10, "q4_K": 15, "q5_K": 17, "q6_K": 18, "bf16": 32}
ST_TO_GGML = {"F32": "f32", "F16": "f16", "BF16": "bf16", "F64": "f64", "I8": "i8",
              "I16": "i16", "I32": "i32", "I64": "i64"}
U32 = 4


def pad(x, a):
    return (x + a - 1) // a * a


def same(want, got):
    """want: a value from gguf_read; got: the same value as @huggingface/gguf gave it in JSON
    (64-bit integers as decimal strings)."""
    if isinstance(want, bool):
        return got is want
    if isinstance(want, int):
        try:
            return int(got) == want
        except (TypeError, ValueError):
            return False
    if isinstance(want, float):
        if not isinstance(got, (int, float)):
            return False
        return (math.isnan(want) and math.isnan(got)) or float(got) == want
    if isinstance(want, str):
        return got == want
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(
            same(w, g) for w, g in zip(want, got))
    return False


def main(argv):
    node_json, inp, outp, typ = argv[1:5]
    node = json.load(open(node_json))
    src = gguf_read.load(inp)
    out = gguf_read.load(outp)  # strict: refuses gaps, bad padding, trailing data
    problems = {"tensors": [], "kv": []}
    tp = problems["tensors"]

    # ---- tensors ----
    align = src.kv.get("general.alignment", 32) if src.format == "gguf" else 32
    running = 0
    want = []
    for t in src.tensors:
        in_type = t.type if src.format == "gguf" else ST_TO_GGML[t.type]
        ty = typ if len(t.ne) == 2 else in_type
        _, blck, tsize = gguf_read.GGML_BY_NAME[ty][1:]
        nbytes = t.n_elements // blck * tsize
        want.append((t.name, list(t.ne), gguf_read.GGML_BY_NAME[ty][0], running))
        running = pad(running + nbytes, align)
    if int(node["tensor_count"]) != len(want) or len(node["tensors"]) != len(want):
        tp.append("tensor_count %s, want %d" % (node["tensor_count"], len(want)))
    for (name, ne, type_id, off), g in zip(want, node["tensors"]):
        got = (g["name"], [int(x) for x in g["shape"]], g["dtype"], int(g["offset"]))
        if got != (name, ne, type_id, off) or g["n_dims"] != len(ne):
            tp.append("tensor %r: got name %r n_dims %d shape %s dtype %d offset %d; want shape "
                      "%s dtype %d offset %d" % (name, got[0], g["n_dims"], got[1], got[2],
                                                 got[3], ne, type_id, off))
    if node["version"] != 3 or node["littleEndian"] is not True:
        tp.append("version %s, littleEndian %s" % (node["version"], node["littleEndian"]))
    data_start = pad(node["tensorInfoByteRange"][1], align)
    if int(node["tensorDataOffset"]) != data_start or out.data_start != data_start:
        tp.append("data section at %s (gguf_read: %d), want %d" % (
            node["tensorDataOffset"], out.data_start, data_start))
    size = os.path.getsize(outp)
    if size != data_start + running:
        tp.append("file of %d bytes, want %d (data at %d + %d)" % (
            size, data_start + running, data_start, running))

    # ---- KVs ----
    kp = problems["kv"]
    exp = []
    if src.format == "gguf":
        exp = [(k, src.kv_types[k], v) for k, v in src.kv.items()
               if k not in ("general.file_type", "general.quantization_version")]
    if gguf_read.GGML_BY_NAME[typ][2] > 1:
        exp.append(("general.quantization_version", U32, 2))
    exp.append(("general.file_type", U32, FTYPE[typ]))
    got = node["kv"]
    if int(node["kv_count"]) != len(exp) or len(got) != len(exp):
        kp.append("kv_count %s (%d listed), want %d" % (node["kv_count"], len(got), len(exp)))
    for (k, ty, v), g in zip(exp, got):
        if g["key"] != k or g["type"] != ty or not same(v, g["value"]):
            kp.append("kv %r: got key %r type %s value %s; want type %d value %s" % (
                k, g["key"], g["type"], json.dumps(g["value"])[:200], ty, json.dumps(v)[:200]))
    for check in ("tensors", "kv"):
        if problems[check]:
            print("%s: %d difference(s)" % (check, len(problems[check])))
            for p in problems[check][:20]:
                print("  " + p)
        else:
            print("%s: ok (%d)" % (check, len(want) if check == "tensors" else len(exp)))
    return 1 if any(problems.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
