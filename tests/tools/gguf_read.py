#!/usr/bin/env python3
"""gguf_read: an independent, standard-library reader of GGUF v2/v3 and safetensors files.

Written from the format descriptions (quant-formats.md 1.7 for GGUF, hardening.md 1.1-1.2 for
safetensors), not from compressd's C code, so that the end-to-end tests can check the daemon's
artifacts with a second implementation. It validates structure strictly and raises
FormatError on anything malformed.

CLI:     gguf_read.py [--allow-trailing] FILE   -> JSON description on stdout
Module:  m = load(path); tensor_bytes(m, name); decode(m, name) -> list of floats
"""

import hashlib
import json
import struct
import sys
from array import array

__all__ = ["FormatError", "Model", "Tensor", "load", "tensor_bytes", "decode", "decode_bytes",
           "GGML_TYPES", "ST_DTYPE_BITS", "describe"]


class FormatError(ValueError):
    """The file is not a well-formed GGUF or safetensors file."""


# ggml types that may appear in a GGUF file: id -> (name, elements per block, bytes per block).
# quant-formats.md 1.1-1.2; ids 4, 5, 31-33 and 36-38 are removed types and are refused.
GGML_TYPES = {
    0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34), 9: ("q8_1", 32, 36),
    10: ("q2_K", 256, 84), 11: ("q3_K", 256, 110), 12: ("q4_K", 256, 144),
    13: ("q5_K", 256, 176), 14: ("q6_K", 256, 210), 15: ("q8_K", 256, 292),
    16: ("iq2_xxs", 256, 66), 17: ("iq2_xs", 256, 74), 18: ("iq3_xxs", 256, 98),
    19: ("iq1_s", 256, 50), 20: ("iq4_nl", 32, 18), 21: ("iq3_s", 256, 110),
    22: ("iq2_s", 256, 82), 23: ("iq4_xs", 256, 136), 24: ("i8", 1, 1), 25: ("i16", 1, 2),
    26: ("i32", 1, 4), 27: ("i64", 1, 8), 28: ("f64", 1, 8), 29: ("iq1_m", 256, 56),
    30: ("bf16", 1, 2), 34: ("tq1_0", 256, 54), 35: ("tq2_0", 256, 66), 39: ("mxfp4", 32, 17),
}
GGML_BY_NAME = {v[0]: (k,) + v for k, v in GGML_TYPES.items()}

# safetensors dtypes and their bits per element (hardening.md 1.2).
ST_DTYPE_BITS = {
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}

INT64_MAX = (1 << 63) - 1
ST_MAX_HEADER = 100_000_000      # the reference reader's limit, decimal
ST_MAX_INT = (1 << 48) - 1       # safetensors JSON schema bound on sizes and offsets
GGUF_MAX_DIMS = 4
GGUF_MAX_NAME = 63               # GGML_MAX_NAME is 64 bytes including the NUL
GGUF_DEFAULT_ALIGNMENT = 32
GGUF_MAX_DEPTH = 8               # nested arrays: a bound against recursion bombs


class Tensor:
    """One tensor: name, type (ggml name or safetensors dtype), ne (ggml order) and shape
    (row-major order; the reverse of ne), absolute data offset and byte size."""

    __slots__ = ("name", "type", "ne", "shape", "offset", "nbytes", "n_elements")

    def __init__(self, name, type_, ne, offset, nbytes):
        self.name = name
        self.type = type_
        self.ne = list(ne)
        self.shape = list(reversed(ne))
        self.offset = offset
        self.nbytes = nbytes
        n = 1
        for d in ne:
            n *= d
        self.n_elements = n


class Model:
    """A parsed file: format, GGUF kv (ordered dict) or safetensors metadata, tensors in file
    order, and the file's bytes."""

    def __init__(self, fmt, data):
        self.format = fmt
        self.data = data
        self.kv = {}
        self.kv_types = {}
        self.metadata = {}
        self.tensors = []
        self.version = None
        self.alignment = None
        self.data_start = None
        self.warnings = []

    def find(self, name):
        for t in self.tensors:
            if t.name == name:
                return t
        return None


# ---- GGUF ------------------------------------------------------------------------------------

class _Cursor:
    """Bounds-checked little-endian reads over the file bytes."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError("truncated: %s needs %d bytes at offset %d, file has %d"
                              % (what, n, self.pos, len(self.data)))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt, what):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, what))[0]

    def u32(self, what):
        return self.unpack("<I", what)

    def u64(self, what):
        return self.unpack("<Q", what)

    def string(self, what):
        n = self.u64(what + " length")
        raw = self.take(n, what)
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError("%s is not valid UTF-8: %s" % (what, e)) from None


# GGUF scalar value types: type id -> (struct format, name).
_GGUF_SCALARS = {
    0: ("<B", "u8"), 1: ("<b", "i8"), 2: ("<H", "u16"), 3: ("<h", "i16"), 4: ("<I", "u32"),
    5: ("<i", "i32"), 6: ("<f", "f32"), 7: ("<B", "bool"), 10: ("<Q", "u64"),
    11: ("<q", "i64"), 12: ("<d", "f64"),
}
GGUF_STRING, GGUF_ARRAY = 8, 9


def _gguf_value(cur, vtype, what, depth=0):
    if vtype in _GGUF_SCALARS:
        fmt, name = _GGUF_SCALARS[vtype]
        v = cur.unpack(fmt, what)
        if name == "bool":
            if v not in (0, 1):
                raise FormatError("%s: bool value %d is not 0 or 1" % (what, v))
            v = bool(v)
        return v
    if vtype == GGUF_STRING:
        return cur.string(what)
    if vtype == GGUF_ARRAY:
        if depth >= GGUF_MAX_DEPTH:
            raise FormatError("%s: arrays nested too deep" % what)
        etype = cur.u32(what + " element type")
        count = cur.u64(what + " element count")
        remain = len(cur.data) - cur.pos
        if etype in _GGUF_SCALARS:
            size = struct.calcsize(_GGUF_SCALARS[etype][0])
            if count * size > remain:
                raise FormatError("%s: array of %d elements exceeds the file" % (what, count))
            if _GGUF_SCALARS[etype][1] != "bool":
                raw = cur.take(count * size, what)
                return list(struct.unpack("<%d%s" % (count, _GGUF_SCALARS[etype][0][1]), raw))
        elif etype in (GGUF_STRING, GGUF_ARRAY):
            if count * 8 > remain:  # each element holds at least a u64 length or header
                raise FormatError("%s: array of %d elements exceeds the file" % (what, count))
        else:
            raise FormatError("%s: invalid array element type %d" % (what, etype))
        return [_gguf_value(cur, etype, what, depth + 1) for _ in range(count)]
    raise FormatError("%s: invalid value type %d" % (what, vtype))


def _pad(x, align):
    return (x + align - 1) // align * align


def _gguf_tensor_info(cur, i, seen):
    name = cur.string("tensor %d name" % i)
    if len(name.encode("utf-8")) > GGUF_MAX_NAME:
        raise FormatError("tensor %d name %r is longer than %d bytes" % (i, name, GGUF_MAX_NAME))
    if name in seen:
        raise FormatError("duplicate tensor name %r" % name)
    seen.add(name)
    n_dims = cur.u32("tensor %r n_dims" % name)
    if n_dims > GGUF_MAX_DIMS:
        raise FormatError("tensor %r has %d dims (max %d)" % (name, n_dims, GGUF_MAX_DIMS))
    ne = [cur.u64("tensor %r ne" % name) for _ in range(n_dims)]
    type_id = cur.u32("tensor %r type" % name)
    offset = cur.u64("tensor %r offset" % name)
    if type_id not in GGML_TYPES:
        raise FormatError("tensor %r has unknown or removed ggml type %d" % (name, type_id))
    tname, blck, tsize = GGML_TYPES[type_id]
    n = 1
    for d in ne:
        if d > INT64_MAX:
            raise FormatError("tensor %r: dimension %d does not fit int64" % (name, d))
        n *= d
    if n > INT64_MAX:
        raise FormatError("tensor %r: element count overflows int64" % name)
    if ne and ne[0] % blck:
        raise FormatError("tensor %r: ne[0]=%d is not a multiple of the %s block size %d"
                          % (name, ne[0], tname, blck))
    nbytes = n // blck * tsize
    if nbytes > INT64_MAX:
        raise FormatError("tensor %r: byte size overflows" % name)
    return name, tname, ne, offset, nbytes


def _gguf_alignment(m):
    if "general.alignment" not in m.kv:
        return GGUF_DEFAULT_ALIGNMENT
    if m.kv_types["general.alignment"] != 4:
        raise FormatError("general.alignment must be a u32")
    a = m.kv["general.alignment"]
    if a == 0 or a & (a - 1) or a > (1 << 30):
        raise FormatError("general.alignment %d is not a power of two up to 2^30" % a)
    return a


def _check_zero(data, start, end, what):
    if any(data[start:end]):
        raise FormatError("%s (bytes %d..%d) is not zero" % (what, start, end))


def _parse_gguf(data, allow_trailing):
    cur = _Cursor(data)
    if bytes(cur.take(4, "magic")) != b"GGUF":
        raise FormatError("bad magic")
    m = Model("gguf", data)
    m.version = cur.u32("version")
    if m.version not in (2, 3):
        raise FormatError("unsupported GGUF version %d" % m.version)
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("kv count")
    # every kv needs >= 12 bytes, every tensor info >= 24: refuse counts the file cannot hold
    if n_kv * 12 + n_tensors * 24 > len(data):
        raise FormatError("counts (%d kv, %d tensors) exceed the file size" % (n_kv, n_tensors))
    for _ in range(n_kv):
        key = cur.string("kv key")
        if not key:
            raise FormatError("empty kv key")
        if key in m.kv:
            raise FormatError("duplicate kv key %r" % key)
        vtype = cur.u32("kv %r type" % key)
        m.kv[key] = _gguf_value(cur, vtype, "kv %r" % key)
        m.kv_types[key] = vtype
    m.alignment = _gguf_alignment(m)
    seen, infos = set(), []
    for i in range(n_tensors):
        infos.append(_gguf_tensor_info(cur, i, seen))
    header_end = cur.pos
    m.data_start = _pad(header_end, m.alignment)
    _gguf_layout(m, infos, header_end, allow_trailing)
    return m


def _gguf_layout(m, infos, header_end, allow_trailing):
    """Offsets are relative to the aligned data section, in file order, each tensor's data
    padded to the alignment (gguf.cpp). Padding must be zeros; the file ends at the end of the
    last tensor or of its padding."""
    data, size = m.data, len(m.data)
    running = 0
    for name, tname, ne, offset, nbytes in infos:
        if offset % m.alignment:
            raise FormatError("tensor %r offset %d is not a multiple of the alignment %d"
                              % (name, offset, m.alignment))
        if offset != running:
            raise FormatError("tensor %r offset %d: expected %d (tensors must be contiguous "
                              "and in order)" % (name, offset, running))
        if m.data_start + offset + nbytes > size:
            raise FormatError("tensor %r data (%d bytes at %d) extends past the end of the "
                              "file (%d bytes)" % (name, nbytes, m.data_start + offset, size))
        m.tensors.append(Tensor(name, tname, ne, m.data_start + offset, nbytes))
        running = _pad(offset + nbytes, m.alignment)
    last = m.tensors[-1] if m.tensors else None
    last_end = last.offset + last.nbytes if last else min(header_end, size)
    _check_zero(data, header_end, min(m.data_start, size), "header padding")
    for a, b in zip(m.tensors, m.tensors[1:]):
        _check_zero(data, a.offset + a.nbytes, b.offset, "padding after tensor %r" % a.name)
    padded_end = m.data_start + running if m.tensors else m.data_start
    if size > padded_end and not allow_trailing:
        raise FormatError("trailing data: file has %d bytes, tensor data ends at %d"
                          % (size, padded_end))
    _check_zero(data, last_end, min(size, padded_end), "padding after the last tensor")


# ---- safetensors -----------------------------------------------------------------------------

def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise FormatError("duplicate JSON key %r" % k)
        d[k] = v
    return d


def _reject_constant(name):
    raise FormatError("JSON constant %s is not allowed" % name)


def _st_int(v, what):
    if type(v) is not int or v < 0 or v > ST_MAX_INT:
        raise FormatError("%s must be an integer in [0, 2^48-1], got %r" % (what, v))
    return v


def _st_entry(name, info):
    if not isinstance(info, dict):
        raise FormatError("tensor %r: entry is not an object" % name)
    for field in ("dtype", "shape", "data_offsets"):
        if field not in info:
            raise FormatError("tensor %r: missing %s" % (name, field))
    dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in ST_DTYPE_BITS:
        raise FormatError("tensor %r: unknown dtype %r" % (name, dtype))
    if not isinstance(shape, list):
        raise FormatError("tensor %r: shape is not a list" % name)
    shape = [_st_int(d, "tensor %r shape" % name) for d in shape]
    if not isinstance(offs, list) or len(offs) != 2:
        raise FormatError("tensor %r: data_offsets is not a pair" % name)
    begin, end = (_st_int(o, "tensor %r data_offsets" % name) for o in offs)
    unknown = sorted(set(info) - {"dtype", "shape", "data_offsets"})
    return dtype, shape, begin, end, unknown


def _parse_safetensors(data):
    size = len(data)
    if size < 8:
        raise FormatError("header too small: file has %d bytes" % size)
    n = struct.unpack("<Q", data[:8])[0]
    if n > ST_MAX_HEADER:
        raise FormatError("header length %d exceeds %d" % (n, ST_MAX_HEADER))
    if 8 + n > size:
        raise FormatError("header length %d exceeds the file (%d bytes)" % (n, size))
    try:
        text = bytes(data[8:8 + n]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError("header is not valid UTF-8: %s" % e) from None
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates,
                            parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise FormatError("header is not valid JSON: %s" % e) from None
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object")

    m = Model("safetensors", data)
    meta = header.pop("__metadata__", None)
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise FormatError("__metadata__ must be a map of strings to strings")
        m.metadata = meta
    entries = []
    for name, info in header.items():
        dtype, shape, begin, end, unknown = _st_entry(name, info)
        if unknown:
            m.warnings.append("tensor %r: unknown fields %s ignored" % (name, unknown))
        entries.append((begin, end, name, dtype, shape))
    _st_layout(m, entries, 8 + n)
    return m


def _st_layout(m, entries, buf_start):
    """The byte buffer is covered exactly by the tensors, without holes, overlaps or trailing
    bytes (reference reader, hardening.md 1.2 steps 6-7). Tensors are listed in file order."""
    pos = 0
    for begin, end, name, dtype, shape in sorted(entries, key=lambda e: (e[0], e[1])):
        if begin != pos or end < begin:
            raise FormatError("tensor %r: data_offsets [%d, %d] leave a hole or overlap "
                              "(expected start %d)" % (name, begin, end, pos))
        n = 1
        for d in shape:
            n *= d
        nbits = n * ST_DTYPE_BITS[dtype]
        if nbits % 8:
            raise FormatError("tensor %r: %d bits is not a whole number of bytes" % (name, nbits))
        if end - begin != nbits // 8:
            raise FormatError("tensor %r: %d data bytes, shape %s of %s needs %d"
                              % (name, end - begin, shape, dtype, nbits // 8))
        m.tensors.append(Tensor(name, dtype, list(reversed(shape)), buf_start + begin,
                                end - begin))
        pos = end
    if buf_start + pos != len(m.data):
        what = "trailing data" if buf_start + pos < len(m.data) else "truncated"
        raise FormatError("%s: tensors cover %d bytes after the header, file has %d"
                          % (what, pos, len(m.data) - buf_start))
    m.data_start = buf_start


# ---- entry points ----------------------------------------------------------------------------

def load(path, allow_trailing=False):
    """Parse and validate a file; the format comes from the content (GGUF magic, else
    safetensors). allow_trailing tolerates bytes after a GGUF's last tensor (llama.cpp does);
    safetensors never allows them."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] == b"GGUF":
        return _parse_gguf(data, allow_trailing)
    return _parse_safetensors(data)


def tensor_bytes(m, name):
    """Raw data bytes of a tensor (a bytes copy)."""
    t = name if isinstance(name, Tensor) else m.find(name)
    if t is None:
        raise KeyError(name)
    return bytes(m.data[t.offset:t.offset + t.nbytes])


def _host_array(code, raw):
    a = array(code)
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def _decode_q8_0(raw):
    """Q8_0 blocks: fp16 scale d then 32 int8. The product q*d is exact in double and in float
    (8 + 11 significant bits), so it equals ggml's float32 dequantization."""
    nb = len(raw) // 34
    dbytes = bytearray(2 * nb)
    dbytes[0::2] = raw[0::34]
    dbytes[1::2] = raw[1::34]
    ds = struct.unpack("<%de" % nb, dbytes)
    qbytes = bytearray(32 * nb)
    for j in range(32):
        qbytes[j::32] = raw[2 + j::34]
    qs = array("b", qbytes)
    out = []
    for i, d in enumerate(ds):
        out.extend([q * d for q in qs[32 * i:32 * i + 32]])
    return out


def decode_bytes(type_name, raw):
    """Decode raw tensor bytes of a type (ggml name or safetensors dtype, any case) to a list
    of Python floats. Supports f32, f16, bf16, q8_0, i8."""
    t = type_name.lower()
    if t == "f32":
        return _host_array("f", raw).tolist()
    if t == "f16":
        return list(struct.unpack("<%de" % (len(raw) // 2), raw))
    if t == "bf16":
        # a bf16 is the top half of a float32: interleave two zero bytes below each value
        wide = bytearray(2 * len(raw))
        wide[2::4] = raw[0::2]
        wide[3::4] = raw[1::2]
        return _host_array("f", bytes(wide)).tolist()
    if t == "i8":
        return [float(v) for v in array("b", raw)]
    if t == "q8_0":
        if len(raw) % 34:
            raise FormatError("q8_0 data of %d bytes is not whole blocks" % len(raw))
        return _decode_q8_0(raw)
    raise NotImplementedError("decoding %s is not supported" % type_name)


def decode(m, name):
    t = name if isinstance(name, Tensor) else m.find(name)
    if t is None:
        raise KeyError(name)
    return decode_bytes(t.type, m.data[t.offset:t.offset + t.nbytes])


def describe(m):
    """The JSON-ready description printed by the CLI."""
    out = {"format": m.format}
    if m.format == "gguf":
        out["version"] = m.version
        out["alignment"] = m.alignment
        out["kv"] = m.kv
    else:
        out["metadata"] = m.metadata
    out["data_start"] = m.data_start
    tensors = []
    for t in m.tensors:
        d = {"name": t.name, "type": t.type}
        if m.format == "gguf":
            d["ne"] = t.ne
        else:
            d["shape"] = t.shape
        d["offset"] = t.offset
        d["nbytes"] = t.nbytes
        d["sha256"] = hashlib.sha256(m.data[t.offset:t.offset + t.nbytes]).hexdigest()
        tensors.append(d)
    out["tensors"] = tensors
    if m.warnings:
        out["warnings"] = m.warnings
    return out


def main(argv):
    args = argv[1:]
    allow_trailing = "--allow-trailing" in args
    args = [a for a in args if a != "--allow-trailing"]
    if len(args) != 1:
        print("usage: gguf_read.py [--allow-trailing] FILE", file=sys.stderr)
        return 2
    try:
        m = load(args[0], allow_trailing=allow_trailing)
    except (FormatError, OSError) as e:
        print("gguf_read: %s: %s" % (args[0], e), file=sys.stderr)
        return 1
    try:
        json.dump(describe(m), sys.stdout, indent=1)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into head: not an error of the file
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
