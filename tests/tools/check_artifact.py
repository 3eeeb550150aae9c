#!/usr/bin/env python3
"""check_artifact: recompute a compressd report from the input and the artifact, independently.

    check_artifact.py INPUT ARTIFACT REPORT.json

Both files are read with gguf_read (a second implementation of the formats); every tensor of
the report is decoded from the input and from the artifact, and its error figures and sizes
are recomputed in double precision and compared with the report's (1e-6 relative, 1e-9
absolute). The artifact must hold exactly the tensors the report accounts for. A tensor whose
report entry has a "layout" (prune, factorize, palettize: docs/formats.md section 4) is
rebuilt from that layout, written here from the format description: low-rank products,
kept rows put back, LUT + packed indices, compressed-tensors bitmasks; the layout must also be
the one stored in the artifact (compressd.layout). Prints one
TAP-friendly summary line; exits 1 with the list of mismatches on any disagreement, 2 on usage
or unreadable input.
"""

import json
import math
import operator
import os
import struct
import sys
from array import array

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_read  # noqa: E402

REL_TOL = 1e-6
ABS_TOL = 1e-9

# ggml types whose name the report gives in safetensors spelling (input_dtype).
_ST_SPELLING = {"f32": "F32", "f16": "F16", "bf16": "BF16", "f64": "F64",
                "i8": "I8", "i16": "I16", "i32": "I32", "i64": "I64"}


class Checker:
    """Collects mismatches instead of stopping at the first, so one run shows them all."""

    def __init__(self):
        self.problems = []

    def fail(self, msg):
        self.problems.append(msg)

    def equal(self, what, got, want):
        if got != want:
            self.fail("%s: report has %r, recomputed %r" % (what, got, want))

    def close(self, what, reported, recomputed):
        """Numbers agree within tolerance; None (JSON null) stands for a non-finite value."""
        if recomputed is not None and not math.isfinite(recomputed):
            recomputed = None
        if reported is None or recomputed is None:
            if reported is not recomputed:
                self.fail("%s: report has %r, recomputed %r" % (what, reported, recomputed))
            return
        if isinstance(reported, bool) or not isinstance(reported, (int, float)):
            self.fail("%s: report has non-number %r" % (what, reported))
            return
        if abs(reported - recomputed) > max(ABS_TOL, REL_TOL * abs(recomputed)):
            self.fail("%s: report has %.17g, recomputed %.17g" % (what, reported, recomputed))


def error_stats(w, wq):
    """sum W^2, sum (W-Wq)^2 and max |W-Wq| over the finite input values, in double."""
    if not all(map(math.isfinite, w)):
        pairs = [(a, b) for a, b in zip(w, wq) if math.isfinite(a)]
        w = [a for a, _ in pairs]
        wq = [b for _, b in pairs]
    diff = list(map(operator.sub, w, wq))
    ref2 = math.fsum(map(operator.mul, w, w))
    err2 = math.fsum(map(operator.mul, diff, diff))
    max_abs = max(map(abs, diff), default=0.0)
    return ref2, err2, max_abs


def rel_l2(ref2, err2):
    if err2 == 0:
        return 0.0
    if ref2 == 0:
        return math.inf
    return math.sqrt(err2 / ref2)


def snr_db(ref2, err2):
    if err2 == 0:
        return math.inf
    if ref2 == 0:
        return -math.inf
    return 10.0 * math.log10(ref2 / err2)


def cosine(w, wq, err2):
    """sum x y / sqrt(sum x^2 sum y^2) over the finite inputs; 1 when there is no error."""
    if err2 == 0:
        return 1.0
    pairs = [(a, b) for a, b in zip(w, wq) if math.isfinite(a)]
    dot = math.fsum(a * b for a, b in pairs)
    x2 = math.fsum(a * a for a, _ in pairs)
    y2 = math.fsum(b * b for _, b in pairs)
    return dot / math.sqrt(x2 * y2) if x2 > 0 and y2 > 0 else None


def input_dtype_name(t):
    """The report spells a type the safetensors way when safetensors has it, else ggml's."""
    return _ST_SPELLING.get(t.type, t.type)


def decode_int8(art, name, shape, ck):
    """int8 per channel: "<name>" I8 of the input's shape and "<name>_scale" F32 with one scale
    per row; W[r][c] = q[r][c] * scale[r], rounded to float32 as the C decoder's float
    multiply does. Returns (values, bytes_out, artifact names used)."""
    q = art.find(name)
    s = art.find(name + "_scale")
    if q is None or s is None:
        ck.fail("%s: int8 output needs tensors %r and %r in the artifact"
                % (name, name, name + "_scale"))
        return None, 0, []
    cols = shape[-1] if shape else 1
    rows = q.n_elements // cols if cols else 0
    ck.equal("%s: artifact dtype" % name, q.type, "I8")
    ck.equal("%s: artifact shape" % name, q.shape, shape)
    ck.equal("%s_scale: artifact dtype" % name, s.type, "F32")
    ck.equal("%s_scale: number of scales" % name, s.n_elements, rows)
    if q.type != "I8" or s.type != "F32" or s.n_elements != rows or q.shape != shape:
        return None, q.nbytes + s.nbytes, [q.name, s.name]
    qs = array("b", gguf_read.tensor_bytes(art, q))
    scales = gguf_read.decode(art, s)
    prod = []
    for r, sc in enumerate(scales):
        prod.extend([v * sc for v in qs[r * cols:(r + 1) * cols]])  # exact in double
    return array("f", prod).tolist(), q.nbytes + s.nbytes, [q.name, s.name]


def decode_plain(art, name, shape, out_type, ck):
    a = art.find(name)
    if a is None:
        ck.fail("%s: missing from the artifact" % name)
        return None, 0, []
    ck.equal("%s: artifact type" % name, a.type.lower(), out_type.lower())
    ck.equal("%s: artifact shape" % name, a.shape, shape)
    try:
        return gguf_read.decode(art, a), a.nbytes, [a.name]
    except NotImplementedError as e:
        ck.fail("%s: %s" % (name, e))
        return None, a.nbytes, [a.name]


def _rows_cols(shape):
    cols = shape[-1] if shape else 1
    n = 1
    for d in shape:
        n *= d
    return (n // cols if cols else 0), cols


def _tensor(art, name, ck, used, what):
    t = art.find(name) if isinstance(name, str) else None
    if t is None:
        ck.fail("%s: layout names %r, which the artifact does not hold" % (what, name))
        return None
    used.append(t.name)
    return t


def _i64(art, t):
    return list(struct.unpack("<%dq" % (t.nbytes // 8), gguf_read.tensor_bytes(art, t)))


def _bits(raw, row_off, j, bits):
    v = 0
    for b in range(bits):
        p = j * bits + b
        v |= ((raw[row_off + p // 8] >> (p % 8)) & 1) << b
    return v


def decode_layout(art, node, ck, what, used):
    """The values a layout node stands for: (list of floats, rows, cols), or None (a failure
    is recorded). Names of the artifact tensors it reads go to used."""
    if not isinstance(node, dict):
        ck.fail("%s: layout node %r is not an object" % (what, node))
        return None
    tr = node.get("transform")
    if tr == "lowrank":
        a = decode_layout(art, node.get("a"), ck, what + ".a", used)
        b = decode_layout(art, node.get("b"), ck, what + ".b", used)
        if a is None or b is None:
            return None
        (av, m, r), (bv, r2, n) = a, b
        if r != r2 or r != node.get("rank"):
            ck.fail("%s: low-rank factors of rank %d and %d (node says %r)" % (what, r, r2, node.get("rank")))
            return None
        out = []
        for i in range(m):
            row = [0.0] * n
            for c in range(r):
                x = av[i * r + c]
                if x != 0.0:
                    row = list(map(operator.add, row, [x * y for y in bv[c * n:(c + 1) * n]]))
            out.extend(row)
        return out, m, n
    if tr in ("select_rows", "select_cols"):
        child = decode_layout(art, node.get("child"), ck, what + ".child", used)
        kt = _tensor(art, node.get("kept"), ck, used, what)
        if child is None or kt is None:
            return None
        vals, rows, cols = child
        kept, size = _i64(art, kt), node.get("size")
        ck.equal("%s: %s type" % (what, kt.name), kt.type, "I64" if art.format == "safetensors" else "i64")
        if len(kept) != (rows if tr == "select_rows" else cols) or sorted(set(kept)) != kept or \
                not kept or kept[0] < 0 or kept[-1] >= size:
            ck.fail("%s: kept indices %r do not fit" % (what, kept[:8]))
            return None
        if tr == "select_rows":
            out = [0.0] * (size * cols)
            for i, k in enumerate(kept):
                out[k * cols:(k + 1) * cols] = vals[i * cols:(i + 1) * cols]
            return out, size, cols
        out = [0.0] * (rows * size)
        for r in range(rows):
            for i, k in enumerate(kept):
                out[r * size + k] = vals[r * cols + i]
        return out, rows, size
    if tr is not None:
        ck.fail("%s: unknown transform %r" % (what, tr))
        return None
    enc = node.get("encoding")
    if enc == "plain":
        t = _tensor(art, node.get("tensor"), ck, used, what)
        if t is None:
            return None
        ck.equal("%s: type" % what, t.type.lower(), str(node.get("type")).lower())
        try:
            vals = gguf_read.decode(art, t)
        except NotImplementedError as e:
            ck.fail("%s: %s" % (what, e))
            return None
        return (vals,) + _rows_cols(t.shape)
    if enc == "int8":
        q = _tensor(art, node.get("tensor"), ck, used, what)
        s = _tensor(art, node.get("scale"), ck, used, what)
        if q is None or s is None:
            return None
        rows, cols = _rows_cols(q.shape)
        qs, scales = array("b", gguf_read.tensor_bytes(art, q)), gguf_read.decode(art, s)
        if len(scales) != rows:
            ck.fail("%s: %d scales for %d rows" % (what, len(scales), rows))
            return None
        prod = []
        for r, sc in enumerate(scales):
            prod.extend([v * sc for v in qs[r * cols:(r + 1) * cols]])
        return array("f", prod).tolist(), rows, cols
    if enc == "palette":
        lt = _tensor(art, node.get("lut"), ck, used, what)
        it = _tensor(art, node.get("indices"), ck, used, what)
        if lt is None or it is None:
            return None
        bits, group, shape = node.get("bits"), node.get("group_size"), node.get("shape")
        rows, cols = shape
        k = 1 << bits
        rb = (cols * bits + 7) // 8
        lut = gguf_read.decode(art, lt)
        raw = gguf_read.tensor_bytes(art, it)
        ngroups = (rows + group - 1) // group
        if len(lut) != ngroups * k or len(raw) != rows * rb:
            ck.fail("%s: palette of %d entries / %d index bytes for %dx%d at %d bits, groups of %d"
                    % (what, len(lut), len(raw), rows, cols, bits, group))
            return None
        out = []
        for r in range(rows):
            base = (r // group) * k
            out.extend(lut[base + _bits(raw, r * rb, j, bits)] for j in range(cols))
            for p in range(cols * bits, rb * 8):
                if (raw[r * rb + p // 8] >> (p % 8)) & 1:
                    ck.fail("%s: row %d has a padding bit set" % (what, r))
                    return None
        return out, rows, cols
    if enc in ("sparse-bitmask", "sparse-24-bitmask"):
        ct = _tensor(art, node.get("compressed"), ck, used, what)
        bt = _tensor(art, node.get("bitmask"), ck, used, what)
        st = _tensor(art, node.get("shape"), ck, used, what)
        ot = _tensor(art, node.get("row_offsets"), ck, used, what) if enc == "sparse-bitmask" else None
        if None in (ct, bt, st) or (enc == "sparse-bitmask" and ot is None):
            return None
        rows, cols = _i64(art, st)
        vals = gguf_read.decode(art, ct)
        bits = gguf_read.tensor_bytes(art, bt)
        rb = (cols + 7) // 8
        offs = _i64(art, ot) if ot is not None else None
        out, v = [], 0
        for r in range(rows):
            if offs is not None and offs[r] != v:
                ck.fail("%s: row_offsets[%d] = %d, %d values before it" % (what, r, offs[r], v))
                return None
            for c in range(cols):
                if (bits[r * rb + c // 8] >> (c % 8)) & 1:
                    out.append(vals[v])
                    v += 1
                else:
                    out.append(0.0)
            if enc == "sparse-24-bitmask":
                for g in range(0, cols, 4):
                    if sum((bits[r * rb + (g + a) // 8] >> ((g + a) % 8)) & 1 for a in range(4)) != 2:
                        ck.fail("%s: row %d group %d does not hold exactly 2 of 4" % (what, r, g // 4))
                        return None
        if v != len(vals):
            ck.fail("%s: %d values stored, %d used" % (what, len(vals), v))
            return None
        return out, rows, cols
    if enc == "pack-quantized":
        return decode_pack_quantized(art, node, ck, what, used)
    if enc == "nf4":
        return decode_nf4(art, node, ck, what, used)
    if enc == "fp8_e4m3":
        return decode_fp8(art, node, ck, what, used)
    ck.fail("%s: unknown encoding %r" % (what, enc))
    return None


def _words(art, t):
    """An I32 tensor's words as unsigned 32-bit integers (little-endian in the file)."""
    raw = gguf_read.tensor_bytes(art, t)
    return struct.unpack("<%dI" % (len(raw) // 4), raw)


def _f32(vals):
    """Round each double to float32, as the C code's float arithmetic does."""
    return array("f", vals).tolist()


def decode_pack_quantized(art, node, ck, what, used):
    """docs/formats.md 4.9, written from the description (compressed-tensors pack_to_int32):
    32 // bits fields per int32 word, field i at bit bits * i, each the signed value plus
    2^(bits-1); weights packed along the row, zero points along the column of groups; value =
    (q - zp) * scale in float32. Also checks the quantization_config block (4.12)."""
    names = [node.get(k) for k in ("packed", "scale", "weight_shape")]
    ts = [_tensor(art, n, ck, used, what) for n in names]
    sym = node.get("symmetric")
    zt = None if sym else _tensor(art, node.get("zero_point"), ck, used, what)
    if None in ts or (not sym and zt is None):
        return None
    pt, stt, sht = ts
    bits, group = node.get("bits"), node.get("group_size")
    rows, cols = _i64(art, sht)
    if [rows, cols] != node.get("shape") or bits not in (2, 3, 4, 8) or cols % group:
        ck.fail("%s: pack-quantized node %r does not fit weight_shape %r" % (what, node, [rows, cols]))
        return None
    pf = 32 // bits
    pw, ng, off, mask = (cols + pf - 1) // pf, cols // group, 1 << (bits - 1), (1 << bits) - 1
    for t, dt, shape in ((pt, "I32", [rows, pw]), (stt, "F32", [rows, ng]),
                         (sht, "I64", [2])) + (() if sym else ((zt, "I32", [(rows + pf - 1) // pf, ng]),)):
        ck.equal("%s: %s dtype" % (what, t.name), t.type, dt)
        ck.equal("%s: %s shape" % (what, t.name), t.shape, shape)
    words = _words(art, pt)
    scales = gguf_read.decode(art, stt)
    zw = _words(art, zt) if zt is not None else None
    out = []
    for r in range(rows):
        for c in range(cols):
            g = c // group
            q = ((words[r * pw + c // pf] >> (bits * (c % pf))) & mask) - off
            z = 0 if zw is None else ((zw[(r // pf) * ng + g] >> (bits * (r % pf))) & mask) - off
            out.append((q - z) * scales[r * ng + g])
        # padding fields of the row's last word are zero
        last = words[r * pw + pw - 1] if pw else 0
        for i in range(cols - (pw - 1) * pf, pf):
            if (last >> (bits * i)) & mask:
                ck.fail("%s: row %d has a non-zero padding field" % (what, r))
                return None
    qc = json.loads(art.metadata.get("quantization_config", "null") or "null")
    wanted = {"num_bits": bits, "type": "int", "symmetric": bool(sym),
              "strategy": "channel" if group == cols and qc and
              qc.get("config_groups", {}).get("group_0", {}).get("weights", {}).get("strategy") == "channel"
              else "group"}
    got = (qc or {}).get("config_groups", {}).get("group_0", {}).get("weights", {})
    if (qc or {}).get("format") != "pack-quantized" or (qc or {}).get("quant_method") != "compressed-tensors" \
            or any(got.get(k) != v for k, v in wanted.items()) \
            or (wanted["strategy"] == "group" and got.get("group_size") != group):
        ck.fail("%s: quantization_config %r does not describe %r" % (what, qc, node))
    return _f32(out), rows, cols


# bitsandbytes' NF4 code values (quant-formats.md 3), as float32
NF4 = array("f", [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                  0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                  0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                  0.7229568362236023, 1.0]).tolist()


def dynamic_map():
    """bitsandbytes' create_dynamic_map(signed=True) (8 bits, 7 exponent bits), from the
    construction in docs/formats.md 4.11 written with fractions: for decade i = 0..6, the 2^i
    midpoints of linspace(0.1, 1, 2^i + 1) times +-10^(i-6), plus 0 and 1; sorted, each
    rounded once to float32."""
    from fractions import Fraction as F
    vals = [F(0), F(1)]
    for i in range(7):
        m = 2 ** i
        for j in range(m):
            mid = F(1, 10) + F(9, 10) * F(2 * j + 1, 2 * m)
            v = mid * F(10) ** (i - 6)
            vals += [v, -v]
    vals.sort()
    return array("f", [float(v) for v in vals]).tolist()


def decode_nf4(art, node, ck, what, used):
    """docs/formats.md 4.11 (bitsandbytes' Params4bit serialization): <name> is U8 [R*C/2, 1],
    index e of the row-major matrix in byte e // 2, the high nibble for even e; value =
    quant_map[index] * absmax of its block (B consecutive weights of a row). With double
    quantization absmax[i] = nested_quant_map[code[i]] * nested_absmax[i // 256] +
    nested_offset, in float32. The quant_state JSON must describe the same tensor, quant_map
    must be the NF4 values and nested_quant_map the dynamic map."""
    dq = node.get("double_quant")
    keys = ["weight", "absmax", "quant_map", "quant_state"] + (["nested_absmax", "nested_quant_map"] if dq else [])
    ts = dict((k, _tensor(art, node.get(k), ck, used, what)) for k in keys)
    if None in ts.values():
        return None
    rows, cols = node.get("shape")
    b = node.get("block_size")
    if not b or cols % b or cols % 2:
        ck.fail("%s: nf4 node %r does not fit its shape" % (what, node))
        return None
    n = rows * cols // b
    ck.equal("%s: weight shape/dtype" % what, (ts["weight"].shape, ts["weight"].type), ([rows * cols // 2, 1], "U8"))
    ck.equal("%s: absmax shape/dtype" % what, (ts["absmax"].shape, ts["absmax"].type), ([n], "U8" if dq else "F32"))
    ck.equal("%s: quant_map" % what, gguf_read.decode(art, ts["quant_map"]), NF4)
    ck.equal("%s: quant_state dtype" % what, ts["quant_state"].type, "U8")
    try:
        st = json.loads(gguf_read.tensor_bytes(art, ts["quant_state"]).decode("utf-8"))
    except ValueError:
        ck.fail("%s: the quant_state is not JSON" % what)
        return None
    want = {"quant_type": "nf4", "blocksize": b, "shape": [rows, cols]}
    if dq:
        want.update({"nested_blocksize": 256, "nested_dtype": "float32"})
    for k, v in want.items():
        ck.equal("%s: quant_state[%s]" % (what, k), st.get(k), v)
    if st.get("dtype") not in ("float16", "bfloat16", "float32"):
        ck.fail("%s: quant_state dtype %r" % (what, st.get("dtype")))
    if dq:
        codes = gguf_read.tensor_bytes(art, ts["absmax"])
        nmap = gguf_read.decode(art, ts["nested_quant_map"])
        ck.equal("%s: nested_quant_map is the dynamic map" % what, nmap, dynamic_map())
        cs = gguf_read.decode(art, ts["nested_absmax"])
        off = _f32([st.get("nested_offset", 0.0)])[0]
        if len(cs) != (n + 255) // 256 or len(nmap) != 256:
            ck.fail("%s: %d nested absmax values for %d blocks" % (what, len(cs), n))
            return None
        absmax = _f32([_f32([nmap[codes[i]] * cs[i // 256]])[0] + off for i in range(n)])
    else:
        absmax = gguf_read.decode(art, ts["absmax"])
    qmap = gguf_read.decode(art, ts["quant_map"])
    raw = gguf_read.tensor_bytes(art, ts["weight"])
    out = [qmap[(raw[e // 2] & 15) if e % 2 else (raw[e // 2] >> 4)] * absmax[e // b]
           for e in range(rows * cols)]
    return _f32(out), rows, cols


def _e4m3(v):
    """An OCP E4M3FN byte as a float, from the bit layout: 1 sign, 4 exponent (bias 7), 3
    mantissa; exponent 0 is subnormal (m / 8 * 2^-6); S.1111.111 is NaN; no infinities."""
    sign = -1.0 if v & 0x80 else 1.0
    e, m = (v >> 3) & 15, v & 7
    if e == 15 and m == 7:
        return float("nan")
    if e == 0:
        return sign * m / 8.0 * 2.0 ** -6
    return sign * (1 + m / 8.0) * 2.0 ** (e - 7)


def decode_fp8(art, node, ck, what, used):
    """docs/formats.md 4.12: the F8_E4M3 tensor times the F32 scale of its block."""
    qt = _tensor(art, node.get("tensor"), ck, used, what)
    st = _tensor(art, node.get("scale"), ck, used, what)
    if qt is None or st is None:
        return None
    rows, cols = _rows_cols(qt.shape)
    br, bc = node.get("block")
    nr, nc = (rows + br - 1) // br, (cols + bc - 1) // bc
    ck.equal("%s: dtype" % what, (qt.type, st.type), ("F8_E4M3", "F32"))
    ck.equal("%s: scale shape" % what, st.shape, [nr, nc])
    raw, sc = gguf_read.tensor_bytes(art, qt), gguf_read.decode(art, st)
    out = [_e4m3(raw[r * cols + c]) * sc[(r // br) * nc + c // bc] for r in range(rows) for c in range(cols)]
    qc = json.loads(art.metadata.get("quantization_config", "null") or "null") or {}
    w = qc.get("config_groups", {}).get("group_0", {}).get("weights", {})
    want_block = None if br == 1 and bc == cols else [br, bc]
    if qc.get("format") != "float-quantized" or w.get("type") != "float" or w.get("num_bits") != 8 \
            or (want_block is not None and w.get("block_structure") != want_block):
        ck.fail("%s: quantization_config %r does not describe %r" % (what, qc, node))
    return _f32(out), rows, cols


def stored_layouts(art):
    """compressd.layout of the artifact (docs/formats.md 4.7), {} if absent."""
    text = art.metadata.get("compressd.layout") if art.format == "safetensors" else art.kv.get("compressd.layout")
    return json.loads(text).get("tensors", {}) if isinstance(text, str) else {}


def check_tensor(inp, art, rt, ck):
    """One report entry; returns (bytes_in, bytes_out, n_elements, artifact names)."""
    name = rt.get("name")
    t = inp.find(name)
    if t is None:
        ck.fail("%r: in the report but not in the input" % name)
        return 0, 0, 0, []
    ck.equal("%s: shape" % name, rt.get("shape"), t.shape)
    ck.equal("%s: input_dtype" % name, rt.get("input_dtype"), input_dtype_name(t))
    ck.equal("%s: bytes_in" % name, rt.get("bytes_in"), t.nbytes)
    out_type = rt.get("output_type") or ""
    if isinstance(rt.get("layout"), dict):
        used = []
        dec = decode_layout(art, rt["layout"], ck, name, used)
        wq = None
        if dec is not None:
            wq, rows, cols = dec
            if rows * cols != t.n_elements:
                ck.fail("%s: layout rebuilds %dx%d values for %d elements" % (name, rows, cols, t.n_elements))
                wq = None
        used = list(dict.fromkeys(used))
        bytes_out = sum(art.find(u).nbytes for u in used)
        outs = rt.get("outputs")
        if not isinstance(outs, list) or sorted(o.get("name") for o in outs) != sorted(used):
            ck.fail("%s: report outputs %r, layout uses %r" % (name, outs, used))
        if stored_layouts(art).get(name, {}).get("layout") != rt["layout"]:
            ck.fail("%s: the artifact's compressd.layout does not match the report" % name)
    elif out_type == "int8":
        wq, bytes_out, used = decode_int8(art, name, t.shape, ck)
    else:
        wq, bytes_out, used = decode_plain(art, name, t.shape, out_type, ck)
    ck.equal("%s: bytes_out" % name, rt.get("bytes_out"), bytes_out)
    n = t.n_elements
    ck.close("%s: bpw" % name, rt.get("bpw"), 8.0 * bytes_out / n if n else 0.0)
    if rt.get("note") is not None and len(used) == 1:
        # left alone: the artifact must carry the input's bytes unchanged
        if gguf_read.tensor_bytes(art, used[0]) != gguf_read.tensor_bytes(inp, t):
            ck.fail("%s: note %r says it was left alone, but its bytes changed"
                    % (name, rt["note"]))
    if wq is not None:
        try:
            w = gguf_read.decode(inp, t)
        except NotImplementedError as e:
            ck.fail("%s: input: %s" % (name, e))
            return t.nbytes, bytes_out, n, used
        ref2, err2, max_abs = error_stats(w, wq)
        ck.close("%s: rel_l2" % name, rt.get("rel_l2"), rel_l2(ref2, err2))
        ck.close("%s: snr_db" % name, rt.get("snr_db"), snr_db(ref2, err2))
        ck.close("%s: max_abs_err" % name, rt.get("max_abs_err"), max_abs)
        if "cosine" in rt:
            ck.close("%s: cosine" % name, rt.get("cosine"), cosine(w, wq, err2))
    return t.nbytes, bytes_out, n, used


def check_totals(report, sums, paths, ck):
    tot = report.get("totals")
    if not isinstance(tot, dict):
        ck.fail("report has no totals object")
        return
    bin_, bout, elems = sums
    ck.equal("totals.bytes_in", tot.get("bytes_in"), bin_)
    ck.equal("totals.bytes_out", tot.get("bytes_out"), bout)
    ck.close("totals.ratio", tot.get("ratio"), bin_ / bout if bout else 0.0)
    ck.close("totals.bpw", tot.get("bpw"), 8.0 * bout / elems if elems else 0.0)
    if "file_bytes_in" in tot:
        ck.equal("totals.file_bytes_in", tot["file_bytes_in"], os.path.getsize(paths[0]))
    if "file_bytes_out" in tot:
        ck.equal("totals.file_bytes_out", tot["file_bytes_out"], os.path.getsize(paths[1]))
    secs = tot.get("seconds")
    if isinstance(secs, bool) or not isinstance(secs, (int, float)) or secs < 0:
        ck.fail("totals.seconds: %r is not a non-negative number" % (secs,))


def check(input_path, artifact_path, report):
    """All checks; returns (Checker, number of tensors, worst rel_l2 reported)."""
    ck = Checker()
    inp = gguf_read.load(input_path, allow_trailing=True)
    art = gguf_read.load(artifact_path)
    tensors = report.get("tensors")
    if not isinstance(tensors, list):
        ck.fail("report has no tensors list")
        return ck, 0, None
    bin_ = bout = elems = 0
    used_names, seen = [], set()
    for rt in tensors:
        if not isinstance(rt, dict):
            ck.fail("report tensor entry %r is not an object" % (rt,))
            continue
        if rt.get("name") in seen:
            ck.fail("%r: listed twice in the report" % rt.get("name"))
        seen.add(rt.get("name"))
        b_in, b_out, n, used = check_tensor(inp, art, rt, ck)
        bin_, bout, elems = bin_ + b_in, bout + b_out, elems + n
        used_names.extend(used)
    missing = [t.name for t in inp.tensors if t.name not in seen]
    if missing:
        ck.fail("input tensors missing from the report: %s" % missing[:10])
    extra = sorted(set(t.name for t in art.tensors) - set(used_names))
    if extra:
        ck.fail("artifact tensors not accounted for by the report: %s" % extra[:10])
    check_totals(report, (bin_, bout, elems), (input_path, artifact_path), ck)
    worst = max((rt.get("rel_l2") for rt in tensors
                 if isinstance(rt, dict) and isinstance(rt.get("rel_l2"), (int, float))),
                default=None)
    return ck, len(tensors), worst


def main(argv):
    if len(argv) != 4:
        print("usage: check_artifact.py INPUT ARTIFACT REPORT.json", file=sys.stderr)
        return 2
    try:
        with open(argv[3]) as f:
            report = json.load(f)
        ck, n, worst = check(argv[1], argv[2], report)
    except (OSError, ValueError, gguf_read.FormatError) as e:
        print("not ok - check_artifact: %s" % e)
        return 2
    if ck.problems:
        for p in ck.problems[:50]:
            print("# %s" % p)
        if len(ck.problems) > 50:
            print("# ... and %d more" % (len(ck.problems) - 50))
        print("not ok - check_artifact: %d mismatches over %d tensors" % (len(ck.problems), n))
        return 1
    print("ok - check_artifact: %d tensors agree with the report (worst rel_l2 %s)"
          % (n, "n/a" if worst is None else "%.3g" % worst))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
