/* fuzz_common: the bodies of the libFuzzer harnesses, shared with the unit test that replays
 * the seed corpus and every saved crash (test_fuzz_replay.c), so that a regression file is
 * run through exactly the code that found it, also in the normal gcc build.
 *
 * Each harness returns 0 when the input was handled correctly: accepted, or refused with a
 * code of the error table and a message. Anything else is a finding: the harness reports it
 * on stderr and returns -1 (the fuzz targets then abort, so that libFuzzer saves the input).
 * Oracles beyond "no crash, no leak, no UB" (the sanitizers see those):
 *   - an accepted model lies inside the input buffer (each tensor's bytes are read);
 *   - an accepted model written again through a cz_layout with the same KVs, metadata and
 *     tensors parses back to the same model (what we accept we can also write and re-read).
 */
#ifndef CZ_FUZZ_COMMON_H
#define CZ_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz_model.h"
#include "cz_model_impl.h"

/* A finding: say what, return -1. */
static int cz_fuzz_fail(const char *what, const cz_error *e) {
  fprintf(stderr, "cz_fuzz: %s%s%s\n", what, e ? ": " : "", e ? e->msg : "");
  return -1;
}

static cz_model *cz_fuzz_model_new(cz_format f) {
  cz_model *m = calloc(1, sizeof *m);
  if (m == NULL) abort();
  m->fd = -1;
  m->format = f;
  return m;
}

/* Parse [p, p+n) as format f into a new model (*out, NULL on error). */
static cz_err_code cz_fuzz_parse(const uint8_t *p, size_t n, cz_format f, cz_model **out,
                                 cz_error *e) {
  cz_model *m = cz_fuzz_model_new(f);
  memset(e, 0, sizeof *e);
  cz_err_code rc = f == CZ_FORMAT_GGUF ? cz__gguf_parse(m, p, n, e) : cz__st_parse(m, p, n, e);
  if (rc != CZ_E_OK) {
    cz_model_close(m);
    m = NULL;
  } else {
    m->file_size = n;
  }
  *out = m;
  return rc;
}

/* A refusal must carry a code of the table (its name is not the fallback "internal") and a
 * message. */
static int cz_fuzz_check_error(cz_err_code rc, const cz_error *e) {
  if (rc == CZ_E_INTERNAL || strcmp(cz_err_name(rc), "internal") == 0)
    return cz_fuzz_fail("refused with an unknown error code", e);
  if (e->code != rc || e->msg[0] == '\0') return cz_fuzz_fail("refused without a message", e);
  return 0;
}

/* Every tensor lies in [p, p+n) and can be read. The volatile sum makes ASan look at the
 * first and last byte of each. */
static int cz_fuzz_check_bounds(const cz_model *m, const uint8_t *p, size_t n) {
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < m->n_tensors; i++) {
    const cz_tensor *t = &m->tensors[i];
    if (t->name == NULL) return cz_fuzz_fail("accepted tensor without a name", NULL);
    if (t->nbytes == 0) continue;
    if (t->data < p || t->nbytes > n || (size_t)(t->data - p) > n - t->nbytes)
      return cz_fuzz_fail("accepted tensor outside the buffer", NULL);
    sink ^= t->data[0];
    sink ^= t->data[t->nbytes - 1];
  }
  (void)sink;
  return 0;
}

static int cz_fuzz_same_model(const cz_model *a, const cz_model *b) {
  if (a->n_tensors != b->n_tensors || a->n_kv != b->n_kv || a->n_meta != b->n_meta)
    return cz_fuzz_fail("re-read model differs in its counts", NULL);
  for (size_t i = 0; i < a->n_tensors; i++) {
    const cz_tensor *x = &a->tensors[i], *y = &b->tensors[i];
    if (strcmp(x->name, y->name) != 0 || x->type != y->type || x->nbytes != y->nbytes ||
        memcmp(x->ne, y->ne, sizeof x->ne) != 0 ||
        (x->nbytes && memcmp(x->data, y->data, x->nbytes) != 0))
      return cz_fuzz_fail("re-read tensor differs", NULL);
    /* a GGUF scalar is written with one dimension of 1 */
    if (x->n_dims != y->n_dims && !(a->format == CZ_FORMAT_GGUF && x->n_dims == 0))
      return cz_fuzz_fail("re-read tensor differs in n_dims", NULL);
  }
  for (size_t i = 0; i < a->n_kv; i++)
    if (strcmp(a->kv[i].key, b->kv[i].key) != 0 || a->kv[i].type != b->kv[i].type ||
        a->kv[i].raw_len != b->kv[i].raw_len ||
        memcmp(a->kv[i].raw, b->kv[i].raw, a->kv[i].raw_len) != 0)
      return cz_fuzz_fail("re-read KV differs", NULL);
  for (size_t i = 0; i < a->n_meta; i++)
    if (strcmp(a->meta_keys[i], b->meta_keys[i]) != 0 ||
        strcmp(a->meta_values[i], b->meta_values[i]) != 0)
      return cz_fuzz_fail("re-read __metadata__ differs", NULL);
  return 0;
}

/* Write m again through a layout into memory and parse the result. A layout may refuse what
 * the reader accepts (the writer makes fewer kinds of file); it must then say why. */
static int cz_fuzz_rewrite(const cz_model *m) {
  cz_error e;
  cz_layout *l = cz_layout_new(m->format);
  if (l == NULL) abort();
  cz_err_code rc = CZ_E_OK;
  if (m->format == CZ_FORMAT_GGUF) rc = cz_layout_copy_kv(l, m, &e);
  for (size_t i = 0; rc == CZ_E_OK && i < m->n_meta; i++)
    rc = cz_layout_set_meta(l, m->meta_keys[i], m->meta_values[i], &e);
  for (size_t i = 0; rc == CZ_E_OK && i < m->n_tensors; i++) {
    const cz_tensor *t = &m->tensors[i];
    rc = cz_layout_add_tensor(l, t->name, t->type, t->n_dims, t->ne, &e);
    if (rc == CZ_E_OK && l->tensors[i].nbytes != t->nbytes) {
      cz_layout_free(l);
      return cz_fuzz_fail("layout computes another byte size than the reader", NULL);
    }
  }
  if (rc == CZ_E_OK) rc = cz_layout_finish(l, &e);
  int ret = 0;
  if (rc != CZ_E_OK) {
    ret = cz_fuzz_check_error(rc, &e);
  } else if (l->total_size <= (64u << 20)) {
    uint8_t *out = calloc(1, (size_t)l->total_size + 1);
    if (out == NULL) abort();
    memcpy(out, l->header, l->header_len);
    for (size_t i = 0; i < l->n_tensors; i++)
      if (m->tensors[i].nbytes)
        memcpy(out + l->tensors[i].file_offset, m->tensors[i].data, m->tensors[i].nbytes);
    cz_model *m2 = NULL;
    rc = cz_fuzz_parse(out, (size_t)l->total_size, m->format, &m2, &e);
    if (rc != CZ_E_OK) ret = cz_fuzz_fail("what the layout wrote does not parse", &e);
    else ret = cz_fuzz_same_model(m, m2);
    cz_model_close(m2);
    free(out);
  }
  cz_layout_free(l);
  return ret;
}

/* The whole input is one file of format f, parsed from an exact-size heap copy (a page-
 * rounded mapping would hide a read one byte past the end). */
static int cz_fuzz_file(const uint8_t *data, size_t size, cz_format f) {
  uint8_t *p = malloc(size ? size : 1);
  if (p == NULL) abort();
  if (size) memcpy(p, data, size);
  cz_error e;
  cz_model *m = NULL;
  cz_err_code rc = cz_fuzz_parse(p, size, f, &m, &e);
  int ret;
  if (rc != CZ_E_OK) {
    ret = cz_fuzz_check_error(rc, &e);
  } else {
    ret = cz_fuzz_check_bounds(m, p, size);
    if (ret == 0) ret = cz_fuzz_rewrite(m);
  }
  cz_model_close(m);
  free(p);
  return ret;
}

static int cz_fuzz_safetensors(const uint8_t *data, size_t size) {
  return cz_fuzz_file(data, size, CZ_FORMAT_SAFETENSORS);
}

static int cz_fuzz_gguf(const uint8_t *data, size_t size) {
  return cz_fuzz_file(data, size, CZ_FORMAT_GGUF);
}

/* The JSON header parser: the input is the header text alone. The harness adds the 8-byte
 * length and, when the header describes a data section, that many zero bytes (up to 1 MiB),
 * so that mutations of the JSON reach the offset, size and coverage checks instead of
 * stopping at "truncated". */
static int cz_fuzz_st_header(const uint8_t *data, size_t size) {
  uint8_t *p = malloc(size + 8);
  if (p == NULL) abort();
  cz__put64(p, size);
  if (size) memcpy(p + 8, data, size);
  cz_error e;
  cz_model *m = NULL;
  cz_err_code rc = cz_fuzz_parse(p, size + 8, CZ_FORMAT_SAFETENSORS, &m, &e);
  cz_model_close(m);
  unsigned long long have = 0, want = 0;
  int ret = 0;
  if (rc == CZ_E_TRUNCATED &&
      sscanf(e.msg, "file has %llu bytes, header describes %llu", &have, &want) == 2 &&
      want > have && want - have <= (1u << 20)) {
    p = realloc(p, (size_t)want);
    if (p == NULL) abort();
    memset(p + size + 8, 0, (size_t)(want - have));
    ret = cz_fuzz_safetensors(p, (size_t)want);
  } else {
    ret = cz_fuzz_safetensors(p, size + 8);
  }
  free(p);
  return ret;
}

/* Harness names as used for the corpus and regression directories. */
typedef struct {
  const char *name;
  int (*run)(const uint8_t *, size_t);
} cz_fuzz_harness;

__attribute__((unused)) static const cz_fuzz_harness cz_fuzz_harnesses[] = {
    {"fuzz_safetensors", cz_fuzz_safetensors},
    {"fuzz_gguf", cz_fuzz_gguf},
    {"fuzz_st_header", cz_fuzz_st_header},
};

#endif
