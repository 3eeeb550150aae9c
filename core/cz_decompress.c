/* cz_decompress: artifacts back to dense float safetensors (see cz_decompress.h). The layout
 * nodes are those of docs/formats.md 4.7; the encodings they name are decoded as 2.3, 4.2,
 * 4.3 and 4.6 describe. */
#include "cz_decompress.h"

#include "cz_quant_ct.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LAYOUT_KEY "compressd.layout"
#define MAX_DEPTH 16                   /* layout nesting; real layouts nest twice */
#define MAX_ELEMS ((int64_t)1 << 34)   /* a rebuilt tensor's elements (64 GiB of floats) */
#define CHUNK_ELEMS ((int64_t)1 << 20) /* elements converted at a time outside layouts */

typedef struct {
  int64_t rows, cols;
  float *v;
} mat;

typedef struct {
  const cz_model *m;
  bool *used;          /* per artifact tensor: consumed by a layout entry */
  bool *mark;          /* per artifact tensor: consumed by the entry being rebuilt */
  bool dry;            /* check the tree and compute shapes only: no values */
  cz_error *err;
} ctx;

static cz_err_code bad(ctx *c, const char *where, const char *what) {
  return cz_err_set(c->err, CZ_E_INVALID_METADATA, "%s: %s: %s", LAYOUT_KEY, where, what);
}

/* ---- reading the artifact ---- */

static const cz_tensor *tensor_ref(ctx *c, const json_t *node, const char *key, const char *where,
                                   cz_err_code *rc) {
  const char *name = json_string_value(json_object_get(node, key));
  const cz_tensor *t = name ? cz_model_find(c->m, name) : NULL;
  if (!t) {
    char msg[160];
    snprintf(msg, sizeof msg, "\"%s\" does not name a tensor of the file", key);
    *rc = bad(c, where, msg);
    return NULL;
  }
  c->used[t - c->m->tensors] = c->mark[t - c->m->tensors] = true;
  *rc = CZ_E_OK;
  return t;
}

static int64_t rows_of(const cz_tensor *t) {
  int64_t n = cz_tensor_nelements(t);
  return t->n_dims && t->ne[0] ? n / t->ne[0] : n;
}

static cz_err_code alloc_mat(ctx *c, mat *out, int64_t rows, int64_t cols, const char *where) {
  if (rows < 0 || cols < 0 || (cols && rows > MAX_ELEMS / cols))
    return bad(c, where, "the shape is out of range");
  out->rows = rows;
  out->cols = cols;
  if (c->dry) return CZ_E_OK;
  out->v = calloc((size_t)(rows * cols > 0 ? rows * cols : 1), sizeof(float));
  if (!out->v) return cz_err_set(c->err, CZ_E_NO_MEMORY, "out of memory rebuilding %s", where);
  return CZ_E_OK;
}

/* Every element of t as floats, through the type table. */
static cz_err_code decode_all(ctx *c, const cz_tensor *t, float *y, const char *where) {
  const cz_type_traits *tr = cz_type_get(t->type);
  if (!tr || !tr->to_f32) return bad(c, where, "its tensor's type cannot be decoded");
  const int64_t n = cz_tensor_nelements(t);
  if (n) tr->to_f32(t->data, y, n);
  return CZ_E_OK;
}

static bool read_i64(const cz_tensor *t, int64_t i, int64_t *v) {
  if (t->type != CZ_TYPE_I64 || i < 0 || i >= cz_tensor_nelements(t)) return false;
  memcpy(v, t->data + 8 * i, 8);
  return true;
}

static bool json_dim(const json_t *a, size_t i, int64_t *v) {
  const json_t *x = json_array_get(a, i);
  if (!json_is_integer(x) || json_integer_value(x) < 0) return false;
  *v = json_integer_value(x);
  return true;
}

/* ---- leaves ---- */

static cz_err_code leaf_plain(ctx *c, const json_t *node, mat *out, const char *where) {
  cz_err_code rc;
  const cz_tensor *t = tensor_ref(c, node, "tensor", where, &rc);
  if (!t) return rc;
  const char *type = json_string_value(json_object_get(node, "type"));
  if (type && strcasecmp(type, cz_type_get(t->type)->name) != 0)
    return bad(c, where, "the tensor's type is not the one the layout gives");
  if ((rc = alloc_mat(c, out, rows_of(t), t->n_dims ? t->ne[0] : 1, where)) || c->dry) return rc;
  return decode_all(c, t, out->v, where);
}

static cz_err_code leaf_int8(ctx *c, const json_t *node, mat *out, const char *where) {
  cz_err_code rc;
  const cz_tensor *q = tensor_ref(c, node, "tensor", where, &rc);
  if (!q) return rc;
  const cz_tensor *s = tensor_ref(c, node, "scale", where, &rc);
  if (!s) return rc;
  const int64_t rows = rows_of(q), cols = q->n_dims ? q->ne[0] : 1;
  if (q->type != CZ_TYPE_I8 || s->type != CZ_TYPE_F32 || cz_tensor_nelements(s) != rows)
    return bad(c, where, "int8 needs an I8 tensor and one F32 scale per row");
  if ((rc = alloc_mat(c, out, rows, cols, where)) || c->dry) return rc;
  for (int64_t r = 0; r < rows; r++) {
    float d;
    memcpy(&d, s->data + 4 * r, 4);
    const int8_t *row = (const int8_t *)(q->data + r * cols);
    for (int64_t j = 0; j < cols; j++) out->v[r * cols + j] = (float)row[j] * d;
  }
  return CZ_E_OK;
}

static cz_err_code leaf_palette(ctx *c, const json_t *node, mat *out, const char *where) {
  cz_err_code rc;
  const cz_tensor *lut = tensor_ref(c, node, "lut", where, &rc);
  if (!lut) return rc;
  const cz_tensor *idx = tensor_ref(c, node, "indices", where, &rc);
  if (!idx) return rc;
  const json_t *shape = json_object_get(node, "shape");
  int64_t R, C, G = json_integer_value(json_object_get(node, "group_size"));
  const int64_t b = json_integer_value(json_object_get(node, "bits"));
  if (json_array_size(shape) != 2 || !json_dim(shape, 0, &R) || !json_dim(shape, 1, &C) ||
      b < 1 || b > 8 || G < 1)
    return bad(c, where, "palette needs bits 1..8, group_size >= 1 and shape [R, C]");
  const int64_t K = (int64_t)1 << b, NG = R ? (R + G - 1) / G : 0;
  const int64_t row_bytes = C > (INT64_MAX - 7) / b ? -1 : (C * b + 7) / 8;
  if (row_bytes < 0 || lut->type != CZ_TYPE_F32 || idx->type != CZ_TYPE_U8 ||
      cz_tensor_nelements(lut) != NG * K || (row_bytes && R > INT64_MAX / row_bytes) ||
      cz_tensor_nelements(idx) != R * row_bytes)
    return bad(c, where, "the lut or indices tensor does not have the sizes of 4.6");
  if ((rc = alloc_mat(c, out, R, C, where)) || c->dry) return rc;
  for (int64_t r = 0; r < R; r++) {
    const uint8_t *p = idx->data + r * row_bytes;
    const uint8_t *l = lut->data + (r / G) * K * 4;
    for (int64_t j = 0; j < C; j++) {
      unsigned v = 0;
      for (int64_t k = 0; k < b; k++) {
        const int64_t bit = j * b + k;
        v |= (unsigned)((p[bit / 8] >> (bit % 8)) & 1) << k;
      }
      memcpy(&out->v[r * C + j], l + 4 * v, 4);
    }
  }
  return CZ_E_OK;
}

/* Reads R and C from an I64 [2] weight_shape tensor and checks them against the node's shape. */
static bool shape_pair(ctx *c, const json_t *node, const char *key, const char *where,
                       int64_t *R, int64_t *C, cz_err_code *rc) {
  const json_t *shape = json_object_get(node, "shape");
  const cz_tensor *st = tensor_ref(c, node, key, where, rc);
  int64_t r2, c2;
  if (!st) return false;
  if (json_array_size(shape) != 2 || !json_dim(shape, 0, R) || !json_dim(shape, 1, C) ||
      cz_tensor_nelements(st) != 2 || !read_i64(st, 0, &r2) || !read_i64(st, 1, &c2) ||
      r2 != *R || c2 != *C) {
    *rc = bad(c, where, "the shape and the weight_shape tensor disagree");
    return false;
  }
  /* bounds every product of R with a per-row count (words, groups, blocks) below */
  if (*C && *R > MAX_ELEMS / *C) {
    *rc = bad(c, where, "the shape is out of range");
    return false;
  }
  return true;
}

/* pack-quantized (4.9): (q - zp) * scale per group, q and zp packed into int32 words. */
static cz_err_code leaf_packq(ctx *c, const json_t *node, mat *out, const char *where) {
  cz_err_code rc;
  const cz_tensor *pk = tensor_ref(c, node, "packed", where, &rc);
  if (!pk) return rc;
  const cz_tensor *sc = tensor_ref(c, node, "scale", where, &rc);
  if (!sc) return rc;
  const bool sym = json_is_true(json_object_get(node, "symmetric"));
  const cz_tensor *zp = NULL;
  if (!sym && !(zp = tensor_ref(c, node, "zero_point", where, &rc))) return rc;
  int64_t R, C;
  if (!shape_pair(c, node, "weight_shape", where, &R, &C, &rc)) return rc;
  const int64_t b = json_integer_value(json_object_get(node, "bits"));
  const int64_t G = json_integer_value(json_object_get(node, "group_size"));
  if ((b != 2 && b != 3 && b != 4 && b != 8) || G < 1 || C % G != 0)
    return bad(c, where, "pack-quantized needs bits 2, 3, 4 or 8 and a group_size dividing C");
  const int64_t pf = 32 / b, NG = C / G, PW = (C + pf - 1) / pf, ZW = (R + pf - 1) / pf;
  if (pk->type != CZ_TYPE_I32 || sc->type != CZ_TYPE_F32 || (PW && R > INT64_MAX / PW) ||
      cz_tensor_nelements(pk) != R * PW || cz_tensor_nelements(sc) != R * NG ||
      (zp && (zp->type != CZ_TYPE_I32 || cz_tensor_nelements(zp) != ZW * NG)))
    return bad(c, where, "the packed, scale or zero_point tensor does not have the sizes of 4.9");
  if ((rc = alloc_mat(c, out, R, C, where)) || c->dry) return rc;
  const int off = 1 << (b - 1);
  for (int64_t r = 0; r < R; r++)
    for (int64_t j = 0; j < C; j++) {
      const int64_t g = j / G;
      float s;
      memcpy(&s, sc->data + 4 * (r * NG + g), 4);
      int z = 0;
      if (zp) {
        /* the zero points are packed along the rows: word (r / pf, g), field r % pf */
        uint32_t w;
        memcpy(&w, zp->data + 4 * ((r / pf) * NG + g), 4);
        z = (int)((w >> (b * (r % pf))) & ((1u << b) - 1)) - off;
      }
      const int q = (int)cz_qct_unpack(pk->data + 4 * r * PW, j, (int)b) - off;
      out->v[r * C + j] = (float)(q - z) * s;
    }
  return CZ_E_OK;
}

/* nf4 (4.11), bitsandbytes' serialization: quant_map[index] * absmax per block along the rows,
 * two indices a byte (the first in the high nibble); with double quantization the absmax
 * values are nested_quant_map[code] * nested_absmax[i / 256] + nested_offset. The quant_state
 * JSON must agree with the node (blocksize, shape, quant_type; nested fields with DQ). */
static cz_err_code leaf_nf4(ctx *c, const json_t *node, mat *out, const char *where) {
  cz_err_code rc;
  const bool dq = json_is_true(json_object_get(node, "double_quant"));
  const cz_tensor *pk, *am, *qm, *qs, *na = NULL, *nm = NULL;
  if (!(pk = tensor_ref(c, node, "weight", where, &rc)) ||
      !(am = tensor_ref(c, node, "absmax", where, &rc)) ||
      !(qm = tensor_ref(c, node, "quant_map", where, &rc)) ||
      !(qs = tensor_ref(c, node, "quant_state", where, &rc)))
    return rc;
  if (dq && (!(na = tensor_ref(c, node, "nested_absmax", where, &rc)) ||
             !(nm = tensor_ref(c, node, "nested_quant_map", where, &rc))))
    return rc;
  const json_t *shape = json_object_get(node, "shape");
  int64_t R, C;
  if (json_array_size(shape) != 2 || !json_dim(shape, 0, &R) || !json_dim(shape, 1, &C) ||
      (C && R > MAX_ELEMS / C))
    return bad(c, where, "nf4 needs a shape [R, C] in range");
  const int64_t B = json_integer_value(json_object_get(node, "block_size"));
  if (B < 1 || C % B != 0 || C % 2 != 0) return bad(c, where, "nf4 needs a block_size dividing C");
  /* the quant_state: a JSON object in U8 bytes */
  if (qs->type != CZ_TYPE_U8) return bad(c, where, "the nf4 quant_state is not a U8 tensor");
  json_t *st = json_loadb((const char *)qs->data, (size_t)cz_tensor_nelements(qs), 0, NULL);
  const json_t *ssh = json_object_get(st, "shape");
  int64_t sr, sc;
  const bool st_ok =
      json_is_object(st) &&
      strcmp(json_string_value(json_object_get(st, "quant_type")) ? json_string_value(json_object_get(st, "quant_type")) : "", "nf4") == 0 &&
      json_integer_value(json_object_get(st, "blocksize")) == B && json_array_size(ssh) == 2 &&
      json_dim(ssh, 0, &sr) && json_dim(ssh, 1, &sc) && sr == R && sc == C &&
      (!dq || (json_integer_value(json_object_get(st, "nested_blocksize")) == 256 &&
               json_is_number(json_object_get(st, "nested_offset"))));
  const float off = dq && st_ok ? (float)json_number_value(json_object_get(st, "nested_offset")) : 0.0f;
  json_decref(st);
  if (!st_ok) return bad(c, where, "the nf4 quant_state does not agree with the layout");
  const int64_t n = R * (C / B);
  if (pk->type != CZ_TYPE_U8 || cz_tensor_nelements(pk) != R * C / 2 ||
      cz_tensor_nelements(am) != n || am->type != (dq ? CZ_TYPE_U8 : CZ_TYPE_F32) ||
      qm->type != CZ_TYPE_F32 || cz_tensor_nelements(qm) != 16 ||
      (dq && (na->type != CZ_TYPE_F32 || cz_tensor_nelements(na) != (n + 255) / 256 ||
              nm->type != CZ_TYPE_F32 || cz_tensor_nelements(nm) != 256)))
    return bad(c, where, "the weight, absmax or map tensors do not have the sizes of 4.11");
  if ((rc = alloc_mat(c, out, R, C, where)) || c->dry) return rc;
  float map4[16];
  memcpy(map4, qm->data, sizeof map4);
  for (int64_t i = 0; i < n; i++) {
    float a;
    if (dq) {
      float s, v;
      memcpy(&s, na->data + 4 * (i / 256), 4);
      memcpy(&v, nm->data + 4 * (size_t)am->data[i], 4);
      const float d = v * s;
      a = d + off;
    } else {
      memcpy(&a, am->data + 4 * i, 4);
    }
    for (int64_t j = 0; j < B; j++) {
      const int64_t e = i * B + j;
      const unsigned k = e % 2 ? pk->data[e / 2] & 15u : pk->data[e / 2] >> 4;
      out->v[e] = map4[k] * a;
    }
  }
  return CZ_E_OK;
}

/* fp8_e4m3 (4.12): the F8_E4M3 value times the scale of its [br, bc] block. */
static cz_err_code leaf_fp8(ctx *c, const json_t *node, mat *out, const char *where) {
  cz_err_code rc;
  const cz_tensor *q = tensor_ref(c, node, "tensor", where, &rc);
  if (!q) return rc;
  const cz_tensor *sc = tensor_ref(c, node, "scale", where, &rc);
  if (!sc) return rc;
  const json_t *blk = json_object_get(node, "block");
  int64_t br, bc;
  if (json_array_size(blk) != 2 || !json_dim(blk, 0, &br) || !json_dim(blk, 1, &bc) || br < 1 ||
      bc < 1)
    return bad(c, where, "fp8_e4m3 needs block [rows, cols]");
  const int64_t R = rows_of(q), C = q->n_dims ? q->ne[0] : 1;
  const int64_t NR = (R + br - 1) / br, NC = (C + bc - 1) / bc;
  if (q->type != CZ_TYPE_F8_E4M3 || sc->type != CZ_TYPE_F32 || cz_tensor_nelements(sc) != NR * NC)
    return bad(c, where, "fp8_e4m3 needs an F8_E4M3 tensor and one F32 scale per block");
  if ((rc = alloc_mat(c, out, R, C, where)) || c->dry) return rc;
  for (int64_t r = 0; r < R; r++)
    for (int64_t j = 0; j < C; j++) {
      float s;
      memcpy(&s, sc->data + 4 * ((r / br) * NC + j / bc), 4);
      out->v[r * C + j] = cz_f8e4m3_to_fp32(q->data[r * C + j]) * s;
    }
  return CZ_E_OK;
}

/* sparse-bitmask (4.2) and sparse-24-bitmask (4.3): set bits of each row, in column order,
 * take the stored values in order. */
static cz_err_code leaf_sparse(ctx *c, const json_t *node, mat *out, bool two_four,
                               const char *where) {
  cz_err_code rc;
  const cz_tensor *vals = tensor_ref(c, node, "compressed", where, &rc);
  if (!vals) return rc;
  const cz_tensor *mask = tensor_ref(c, node, "bitmask", where, &rc);
  if (!mask) return rc;
  const cz_tensor *shape = tensor_ref(c, node, "shape", where, &rc);
  if (!shape) return rc;
  const cz_tensor *offs = NULL;
  if (!two_four && !(offs = tensor_ref(c, node, "row_offsets", where, &rc))) return rc;
  int64_t R, C;
  if (cz_tensor_nelements(shape) != 2 || !read_i64(shape, 0, &R) || !read_i64(shape, 1, &C) ||
      R < 0 || C < 0)
    return bad(c, where, "the shape tensor must hold R and C as I64");
  const int64_t mrow = (C + 7) / 8, nnz = cz_tensor_nelements(vals);
  if (mask->type != CZ_TYPE_U8 || (mrow && R > INT64_MAX / mrow) ||
      cz_tensor_nelements(mask) != R * mrow || (offs && cz_tensor_nelements(offs) != R) ||
      (two_four && (C % 4 != 0 || nnz != R * (C / 2))))
    return bad(c, where, "the bitmask, values or row offsets do not fit the shape");
  if (c->dry) return alloc_mat(c, out, R, C, where);
  float *v = malloc(sizeof(float) * (size_t)(nnz ? nnz : 1));
  if (!v) return cz_err_set(c->err, CZ_E_NO_MEMORY, "out of memory");
  if ((rc = decode_all(c, vals, v, where)) || (rc = alloc_mat(c, out, R, C, where))) {
    free(v);
    return rc;
  }
  int64_t k = 0;
  for (int64_t r = 0; r < R && !rc; r++) {
    int64_t start;
    if (offs && (!read_i64(offs, r, &start) || start != k)) {
      rc = bad(c, where, "row_offsets disagree with the bitmask");
      break;
    }
    const uint8_t *p = mask->data + r * mrow;
    int64_t in_row = 0;
    for (int64_t j = 0; j < C; j++) {
      if (!((p[j / 8] >> (j % 8)) & 1)) continue;
      if (k >= nnz) {
        rc = bad(c, where, "the bitmask has more set bits than there are values");
        break;
      }
      out->v[r * C + j] = v[k++];
      in_row++;
    }
    if (!rc && two_four && in_row != C / 2) rc = bad(c, where, "a row does not keep 2 of every 4");
  }
  if (!rc && k != nnz) rc = bad(c, where, "the bitmask has fewer set bits than there are values");
  free(v);
  return rc;
}

/* ---- nodes ---- */

static cz_err_code eval(ctx *c, const json_t *node, mat *out, const char *where, int depth);

static cz_err_code node_lowrank(ctx *c, const json_t *node, mat *out, const char *where,
                                int depth) {
  mat a = {0}, b = {0};
  cz_err_code rc;
  if ((rc = eval(c, json_object_get(node, "a"), &a, where, depth + 1)) ||
      (rc = eval(c, json_object_get(node, "b"), &b, where, depth + 1)))
    goto done;
  const json_t *rank = json_object_get(node, "rank");
  if (a.cols != b.rows || (rank && json_integer_value(rank) != a.cols)) {
    rc = bad(c, where, "the factors' inner dimensions differ");
    goto done;
  }
  if ((rc = alloc_mat(c, out, a.rows, b.cols, where)) || c->dry) goto done;
  /* out = a . b in double, one output row at a time */
  double *acc = malloc(sizeof(double) * (size_t)(b.cols ? b.cols : 1));
  if (!acc) {
    rc = cz_err_set(c->err, CZ_E_NO_MEMORY, "out of memory");
    goto done;
  }
  for (int64_t i = 0; i < a.rows; i++) {
    for (int64_t j = 0; j < b.cols; j++) acc[j] = 0;
    for (int64_t k = 0; k < a.cols; k++) {
      const double x = a.v[i * a.cols + k];
      const float *brow = b.v + k * b.cols;
      for (int64_t j = 0; j < b.cols; j++) acc[j] += x * brow[j];
    }
    for (int64_t j = 0; j < b.cols; j++) out->v[i * b.cols + j] = (float)acc[j];
  }
  free(acc);
done:
  free(a.v);
  free(b.v);
  return rc;
}

static cz_err_code node_select(ctx *c, const json_t *node, mat *out, bool rows, const char *where,
                               int depth) {
  cz_err_code rc;
  const cz_tensor *kept = tensor_ref(c, node, "kept", where, &rc);
  if (!kept) return rc;
  const json_t *size = json_object_get(node, "size");
  if (!json_is_integer(size) || json_integer_value(size) < 0 || kept->type != CZ_TYPE_I64)
    return bad(c, where, "select needs a size and an I64 tensor of kept indices");
  mat ch = {0};
  if ((rc = eval(c, json_object_get(node, "child"), &ch, where, depth + 1))) return rc;
  const int64_t n = json_integer_value(size), K = cz_tensor_nelements(kept);
  if (K != (rows ? ch.rows : ch.cols)) {
    free(ch.v);
    return bad(c, where, "the kept indices do not match the part they index");
  }
  if ((rc = alloc_mat(c, out, rows ? n : ch.rows, rows ? ch.cols : n, where)) || c->dry) {
    free(ch.v);
    return rc;
  }
  int64_t prev = -1;
  for (int64_t k = 0; k < K && !rc; k++) {
    int64_t at = -1;  /* read_i64 cannot fail for k < K; -1 would be refused below */
    read_i64(kept, k, &at);
    if (at <= prev || at >= n) {
      rc = bad(c, where, "kept indices must be ascending and below size");
      break;
    }
    prev = at;
    if (rows) {
      memcpy(out->v + at * ch.cols, ch.v + k * ch.cols, sizeof(float) * (size_t)ch.cols);
    } else {
      for (int64_t r = 0; r < ch.rows; r++) out->v[r * n + at] = ch.v[r * ch.cols + k];
    }
  }
  free(ch.v);
  if (rc) {
    free(out->v);
    out->v = NULL;
  }
  return rc;
}

static cz_err_code eval(ctx *c, const json_t *node, mat *out, const char *where, int depth) {
  memset(out, 0, sizeof *out);
  if (!json_is_object(node)) return bad(c, where, "a layout node is not an object");
  if (depth > MAX_DEPTH) return bad(c, where, "the layout nests too deep");
  const char *enc = json_string_value(json_object_get(node, "encoding"));
  const char *tf = json_string_value(json_object_get(node, "transform"));
  if (enc && strcmp(enc, "plain") == 0) return leaf_plain(c, node, out, where);
  if (enc && strcmp(enc, "int8") == 0) return leaf_int8(c, node, out, where);
  if (enc && strcmp(enc, "palette") == 0) return leaf_palette(c, node, out, where);
  if (enc && strcmp(enc, "pack-quantized") == 0) return leaf_packq(c, node, out, where);
  if (enc && strcmp(enc, "nf4") == 0) return leaf_nf4(c, node, out, where);
  if (enc && strcmp(enc, "fp8_e4m3") == 0) return leaf_fp8(c, node, out, where);
  if (enc && strcmp(enc, "sparse-bitmask") == 0) return leaf_sparse(c, node, out, false, where);
  if (enc && strcmp(enc, "sparse-24-bitmask") == 0) return leaf_sparse(c, node, out, true, where);
  if (tf && strcmp(tf, "lowrank") == 0) return node_lowrank(c, node, out, where, depth);
  if (tf && strcmp(tf, "select_rows") == 0) return node_select(c, node, out, true, where, depth);
  if (tf && strcmp(tf, "select_cols") == 0) return node_select(c, node, out, false, where, depth);
  return bad(c, where, "unknown layout node (not one of docs/formats.md 4.7)");
}

/* ---- the output ---- */

typedef enum { OUT_LAYOUT, OUT_DECODE, OUT_INT8, OUT_COPY } out_kind;

typedef struct {
  out_kind kind;
  const char *name;
  int n_dims;
  int64_t ne[CZ_MAX_DIMS];
  const cz_tensor *t, *scale;  /* DECODE/COPY: t; INT8: t and scale */
  const json_t *entry;         /* LAYOUT */
  size_t layout_index;         /* its place in the output */
} out_item;

static const char *layout_text(const cz_model *m) {
  for (size_t i = 0; i < m->n_meta; i++)
    if (strcmp(m->meta_keys[i], LAYOUT_KEY) == 0) return m->meta_values[i];
  return NULL;
}

static cz_err_code pwrite_all(int fd, const void *buf, size_t len, uint64_t off, cz_error *err) {
  const uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return cz_err_set(err, errno == ENOSPC ? CZ_E_NO_SPACE : CZ_E_IO, "writing the output: %s",
                        strerror(errno));
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return CZ_E_OK;
}

/* n floats at off, in dtype. */
static cz_err_code write_floats(int fd, const float *v, int64_t n, cz_type dtype, uint64_t off,
                                cz_error *err) {
  if (dtype == CZ_TYPE_F32) return pwrite_all(fd, v, (size_t)n * 4, off, err);
  uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n ? n : 1));
  if (!h) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  for (int64_t i = 0; i < n; i++) h[i] = cz_fp32_to_fp16(v[i]);
  cz_err_code rc = pwrite_all(fd, h, (size_t)n * 2, off, err);
  free(h);
  return rc;
}

/* A decodable tensor, chunk of rows by chunk of rows (the scale of an int8 pair applied). */
static cz_err_code write_decoded(int fd, const out_item *o, cz_type dtype, uint64_t off,
                                 cz_error *err) {
  const cz_tensor *t = o->t;
  const cz_type_traits *tr = cz_type_get(t->type);
  const int64_t cols = t->n_dims ? t->ne[0] : 1, rows = rows_of(t);
  const uint64_t in_row = o->kind == OUT_INT8 ? (uint64_t)cols : cz_type_row_size(t->type, cols);
  int64_t per = cols ? CHUNK_ELEMS / cols : 1;
  if (per < 1) per = 1;
  float *y = malloc(sizeof(float) * (size_t)(per * cols > 0 ? per * cols : 1));
  if (!y) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz_err_code rc = CZ_E_OK;
  const size_t esz = dtype == CZ_TYPE_F32 ? 4 : 2;
  for (int64_t r = 0; r < rows && !rc; r += per) {
    const int64_t nr = r + per <= rows ? per : rows - r;
    if (o->kind == OUT_INT8) {
      for (int64_t i = 0; i < nr; i++) {
        float d;
        memcpy(&d, o->scale->data + 4 * (r + i), 4);
        const int8_t *q = (const int8_t *)(t->data + (uint64_t)(r + i) * in_row);
        for (int64_t j = 0; j < cols; j++) y[i * cols + j] = (float)q[j] * d;
      }
    } else {
      tr->to_f32(t->data + (uint64_t)r * in_row, y, nr * cols);
    }
    rc = write_floats(fd, y, nr * cols, dtype, off + (uint64_t)(r * cols) * esz, err);
  }
  free(y);
  return rc;
}

static bool decodable(const cz_tensor *t) {
  const cz_type_traits *tr = cz_type_get(t->type);
  if (!tr || !tr->to_f32) return false;
  /* integer tensors are data (ids, indices), not weights: copied */
  return tr->is_quantized || t->type == CZ_TYPE_F32 || t->type == CZ_TYPE_F16 ||
         t->type == CZ_TYPE_BF16 || t->type == CZ_TYPE_F64;
}

/* quantize.int8's per-channel pair: X (I8) and X_scale (F32, one per row). */
static const cz_tensor *int8_scale(const cz_model *m, const cz_tensor *t) {
  if (t->type != CZ_TYPE_I8) return NULL;
  char name[CZ_MAX_NAME + 16];
  snprintf(name, sizeof name, "%s_scale", t->name);
  const cz_tensor *s = cz_model_find(m, name);
  return s && s->type == CZ_TYPE_F32 && cz_tensor_nelements(s) == rows_of(t) ? s : NULL;
}

cz_err_code cz_decompress(const cz_model *in, cz_type dtype, int fd, json_t **summary,
                          cz_error *err) {
  if (dtype != CZ_TYPE_F32 && dtype != CZ_TYPE_F16)
    return cz_err_set(err, CZ_E_INVALID_ARGUMENT, "decompress writes F32 or F16");
  cz_err_code rc = CZ_E_OK;
  json_t *layout = NULL;
  const json_t *entries = NULL;
  const char *text = layout_text(in);
  char *kv_text = NULL;
  if (!text && in->format == CZ_FORMAT_GGUF) {
    long k = cz_gguf_find_kv(in, LAYOUT_KEY);
    const char *str;
    uint64_t len;
    if (k >= 0 && cz_gguf_kv_str(&in->kv[k], &str, &len)) text = kv_text = strndup(str, (size_t)len);
  }
  if (text && !(layout = json_loads(text, 0, NULL))) {
    free(kv_text);
    return cz_err_set(err, CZ_E_INVALID_METADATA, "%s is not JSON", LAYOUT_KEY);
  }
  free(kv_text);
  if (layout) {
    entries = json_object_get(layout, "tensors");
    if (!json_is_object(entries) || json_integer_value(json_object_get(layout, "version")) != 1) {
      json_decref(layout);
      return cz_err_set(err, CZ_E_INVALID_METADATA, "%s: version 1 with \"tensors\" expected",
                        LAYOUT_KEY);
    }
  }
  const size_t n_in = in->n_tensors, n_layout = entries ? json_object_size(entries) : 0;
  bool *used = calloc(n_in ? n_in : 1, sizeof *used), *mark = calloc(n_in ? n_in : 1, sizeof *mark);
  out_item *items = calloc(n_in + n_layout + 1, sizeof *items);
  size_t *first = calloc(n_layout + 1, sizeof *first);  /* earliest artifact tensor of each */
  cz_layout *l = cz_layout_new(CZ_FORMAT_SAFETENSORS);
  mat *built = calloc(n_layout + 1, sizeof *built);
  out_item *order = calloc(n_in + n_layout + 1, sizeof *order);
  bool *placed = calloc(n_layout + 1, sizeof *placed);
  bool *scale_of_pair = calloc(n_in ? n_in : 1, sizeof *scale_of_pair);
  if (!used || !mark || !items || !first || !l || !built || !order || !placed || !scale_of_pair) {
    rc = cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    goto done;
  }
  ctx c = {in, used, mark, true, err};
  /* 1. check every layout entry and its shape, noting which artifact tensors it consumes
   * (values come in step 3, one tensor at a time) */
  size_t li = 0, n_items = 0;
  const char *key;
  json_t *e;
  json_object_foreach((json_t *)entries, key, e) {
    memset(mark, 0, n_in * sizeof *mark);
    if ((rc = eval(&c, json_object_get(e, "layout"), &built[li], key, 0))) goto done;
    const json_t *shape = json_object_get(e, "shape");
    const size_t nd = json_array_size(shape);
    int64_t prod = 1, dim;
    if (nd < 1 || nd > CZ_MAX_DIMS) {
      rc = bad(&c, key, "shape must have 1 to 4 dims");
      goto done;
    }
    out_item *o = &items[n_items++];
    o->kind = OUT_LAYOUT;
    o->name = key;
    o->entry = e;
    o->layout_index = li;
    o->n_dims = (int)nd;
    for (size_t d = 0; d < CZ_MAX_DIMS; d++) o->ne[d] = 1;
    for (size_t d = 0; d < nd; d++) {
      if (!json_dim(shape, d, &dim) || (dim && prod > MAX_ELEMS / dim)) {
        rc = bad(&c, key, "shape is out of range");
        goto done;
      }
      prod *= dim;
      o->ne[nd - 1 - d] = dim;
    }
    if (prod != built[li].rows * built[li].cols) {
      rc = bad(&c, key, "the rebuilt tensor does not have the entry's shape");
      goto done;
    }
    first[li] = n_in;
    for (size_t i = 0; i < n_in; i++)
      if (mark[i] && i < first[li]) first[li] = i;
    li++;
  }
  /* 2. every other artifact tensor, in file order; layout entries at their first part */
  size_t n_out = 0;
  for (size_t i = 0; i < n_in; i++) {
    const cz_tensor *s = int8_scale(in, &in->tensors[i]);
    if (s && !used[i]) scale_of_pair[s - in->tensors] = true;
  }
  for (size_t i = 0; i <= n_in; i++) {
    for (size_t k = 0; k < n_items; k++)
      if (!placed[k] && first[items[k].layout_index] == i) {
        order[n_out++] = items[k];
        placed[k] = true;
      }
    if (i == n_in || used[i] || scale_of_pair[i]) continue;
    const cz_tensor *t = &in->tensors[i];
    out_item *o = &order[n_out++];
    o->name = t->name;
    o->t = t;
    o->n_dims = t->n_dims;
    memcpy(o->ne, t->ne, sizeof t->ne);
    if ((o->scale = int8_scale(in, t))) o->kind = OUT_INT8;
    else o->kind = decodable(t) ? OUT_DECODE : OUT_COPY;
  }
  /* 3. the frame, then the data */
  json_int_t n_layout_out = 0, n_decoded = 0, n_copied = 0;
  for (size_t k = 0; k < n_out && !rc; k++) {
    const out_item *o = &order[k];
    cz_type ty = o->kind == OUT_COPY ? o->t->type : dtype;
    if (o->kind == OUT_COPY && !cz_type_get(ty)->st_name) {
      rc = cz_err_set(err, CZ_E_UNSUPPORTED_INPUT, "tensor %s: type %s has no safetensors dtype",
                      o->name, cz_type_get(ty)->name);
      break;
    }
    rc = cz_layout_add_tensor(l, o->name, ty, o->n_dims, o->ne, err);
    n_layout_out += o->kind == OUT_LAYOUT;
    n_decoded += o->kind == OUT_DECODE || o->kind == OUT_INT8;
    n_copied += o->kind == OUT_COPY;
  }
  if (!rc) rc = cz_layout_set_meta(l, "format", "pt", err);
  if (!rc) rc = cz_layout_finish(l, err);
  if (!rc) rc = cz_layout_write_frame(l, fd, err);
  for (size_t k = 0; k < n_out && !rc; k++) {
    const out_item *o = &order[k];
    const uint64_t off = l->tensors[k].file_offset;
    if (o->kind == OUT_LAYOUT) {
      mat b;
      c.dry = false;
      if (!(rc = eval(&c, json_object_get(o->entry, "layout"), &b, o->name, 0)))
        rc = write_floats(fd, b.v, b.rows * b.cols, dtype, off, err);
      free(b.v);
    } else if (o->kind == OUT_COPY) {
      rc = pwrite_all(fd, o->t->data, (size_t)o->t->nbytes, off, err);
    } else {
      rc = write_decoded(fd, o, dtype, off, err);
    }
  }
  if (!rc && summary)
    *summary = json_pack("{s:I, s:I, s:I, s:I, s:I}", "bytes", (json_int_t)l->total_size,
                         "tensors", (json_int_t)n_out, "rebuilt_from_layout", n_layout_out,
                         "decoded", n_decoded, "copied", n_copied);
done:
  free(order);
  free(placed);
  free(scale_of_pair);
  if (built)
    for (size_t k = 0; k < n_layout; k++) free(built[k].v);
  free(built);
  free(used);
  free(mark);
  free(items);
  free(first);
  cz_layout_free(l);
  json_decref(layout);
  return rc;
}
