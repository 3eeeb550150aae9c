/* cz_mixture: llama-quantize's per-tensor type choice for its presets (see cz_mixture.h).
 *
 * Written from the behaviour of llama.cpp's src/llama-quant.cpp (llama_tensor_get_type,
 * llama_tensor_get_type_impl, tensor_type_fallback, tensor_allows_quantization,
 * tensor_requires_imatrix) and tools/quantize/quantize.cpp (option parsing); the rules are
 * restated here in C, branch for branch for the presets offered. The IQ1/IQ2/IQ3 presets are
 * not offered (their types have no kernel here), so their branches are not carried.
 * The size budget at the end (cz_budget_*) is ours: see cz_mixture.h and docs/methods.md. */
#include "cz_mixture.h"

#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cz_imatrix.h"
#include "cz_method.h"
#include "cz_model_impl.h"

#define MAX_PATTERNS 256
#define MAX_PATTERN_LEN 1024

/* llama_ftype values (include/llama.h); they are general.file_type. */
enum {
  FT_ALL_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
  FT_Q2_K = 10, FT_Q3_K_S = 11, FT_Q3_K_M = 12, FT_Q3_K_L = 13, FT_Q4_K_S = 14, FT_Q4_K_M = 15,
  FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_Q2_K_S = 21, FT_IQ3_XS = 22, FT_IQ3_XXS = 23,
  FT_IQ4_NL = 25, FT_IQ3_S = 26, FT_IQ3_M = 27, FT_IQ4_XS = 30, FT_BF16 = 32, FT_TQ1_0 = 36,
  FT_TQ2_0 = 37, FT_MXFP4_MOE = 38
};

/* The presets offered: llama-quantize's type names, their ftype and default tensor type
 * (llama_ftype_get_default_type). */
static const struct {
  const char *name;
  int ftype;
  cz_type type;
} presets[] = {
    {"Q4_0", FT_Q4_0, CZ_TYPE_Q4_0},       {"Q4_1", FT_Q4_1, CZ_TYPE_Q4_1},
    {"MXFP4_MOE", FT_MXFP4_MOE, CZ_TYPE_MXFP4},
    {"Q5_0", FT_Q5_0, CZ_TYPE_Q5_0},       {"Q5_1", FT_Q5_1, CZ_TYPE_Q5_1},
    {"TQ1_0", FT_TQ1_0, CZ_TYPE_TQ1_0},    {"TQ2_0", FT_TQ2_0, CZ_TYPE_TQ2_0},
    {"Q2_K", FT_Q2_K, CZ_TYPE_Q2_K},       {"Q2_K_S", FT_Q2_K_S, CZ_TYPE_Q2_K},
    {"Q3_K_S", FT_Q3_K_S, CZ_TYPE_Q3_K},   {"Q3_K_M", FT_Q3_K_M, CZ_TYPE_Q3_K},
    {"Q3_K_L", FT_Q3_K_L, CZ_TYPE_Q3_K},   {"IQ4_NL", FT_IQ4_NL, CZ_TYPE_IQ4_NL},
    {"IQ4_XS", FT_IQ4_XS, CZ_TYPE_IQ4_XS}, {"Q4_K_S", FT_Q4_K_S, CZ_TYPE_Q4_K},
    {"Q4_K_M", FT_Q4_K_M, CZ_TYPE_Q4_K},   {"Q5_K_S", FT_Q5_K_S, CZ_TYPE_Q5_K},
    {"Q5_K_M", FT_Q5_K_M, CZ_TYPE_Q5_K},   {"Q6_K", FT_Q6_K, CZ_TYPE_Q6_K},
    {"Q8_0", FT_Q8_0, CZ_TYPE_Q8_0},       {"F16", FT_F16, CZ_TYPE_F16},
    {"BF16", FT_BF16, CZ_TYPE_BF16},       {"F32", FT_ALL_F32, CZ_TYPE_F32},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

/* llama-quantize's aliases */
static const struct {
  const char *alias, *name;
} aliases[] = {{"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};

typedef struct {
  char *pattern;    /* as given */
  regex_t re;       /* compiled from the lower-cased pattern */
  cz_type type;
} tt_pattern;

struct cz_mixture {
  int preset;                 /* index in presets[] */
  bool pure, leave_output;
  int output_type, embd_type; /* -1: not given */
  int n_patterns;
  tt_pattern patterns[MAX_PATTERNS];
};

/* ---- parsing ---- */

void cz_mixture_free(cz_mixture *mx) {
  if (!mx) return;
  for (int i = 0; i < mx->n_patterns; i++) {
    free(mx->patterns[i].pattern);
    regfree(&mx->patterns[i].re);
  }
  free(mx);
}

static int preset_index(const char *name) {
  for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
    if (strcasecmp(name, aliases[i].alias) == 0) name = aliases[i].name;
  for (int i = 0; i < N_PRESETS; i++)
    if (strcasecmp(name, presets[i].name) == 0) return i;
  return -1;
}

/* A ggml type a GGUF tensor may have, by name (any case), or -1. */
static int gguf_type_by_name(const json_t *v) {
  const char *s = json_string_value(v);
  int t = s ? cz_type_from_name(s) : -1;
  const cz_type_traits *tr = cz_type_get(t);
  return tr && tr->in_gguf ? t : -1;
}

static cz_err_code parse_type_field(const json_t *step, const char *key, int idx, int *out,
                                    cz_error *err) {
  *out = -1;
  const json_t *v = json_object_get(step, key);
  if (v == NULL) return CZ_E_OK;
  if ((*out = gguf_type_by_name(v)) < 0)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].%s must be a ggml type name (e.g. \"q8_0\")",
                      idx, key);
  return CZ_E_OK;
}

static cz_err_code parse_bool_field(const json_t *step, const char *key, int idx, bool *out,
                                    cz_error *err) {
  const json_t *v = json_object_get(step, key);
  *out = false;
  if (v == NULL) return CZ_E_OK;
  if (!json_is_boolean(v))
    return cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].%s must be true or false", idx, key);
  *out = json_is_true(v);
  return CZ_E_OK;
}

/* llama-quantize lower-cases the pattern; std::regex (ECMAScript) knows \d, which POSIX
 * extended syntax does not: it becomes [0-9] outside bracket expressions. */
static bool translate_pattern(const char *in, char *out, size_t cap) {
  size_t o = 0;
  bool in_bracket = false;
  for (size_t i = 0; in[i]; i++) {
    char c = (char)tolower((unsigned char)in[i]);
    const char *emit = NULL;
    char one[3] = {c, 0, 0};
    if (!in_bracket && c == '\\' && in[i + 1] && tolower((unsigned char)in[i + 1]) == 'd') {
      emit = "[0-9]";
      i++;
    } else if (c == '\\' && in[i + 1]) {
      one[1] = (char)tolower((unsigned char)in[++i]);
      emit = one;
    } else {
      if (c == '[' && !in_bracket) in_bracket = true;
      else if (c == ']' && in_bracket) in_bracket = false;
      emit = one;
    }
    size_t n = strlen(emit);
    if (o + n + 1 > cap) return false;
    memcpy(out + o, emit, n);
    o += n;
  }
  out[o] = 0;
  return true;
}

static cz_err_code parse_patterns(const json_t *tt, int idx, cz_mixture *mx, cz_error *err) {
  if (tt == NULL) return CZ_E_OK;
  if (!json_is_object(tt))
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].tensor_types must be an object {\"PATTERN\": \"TYPE\"}", idx);
  if (json_object_size(tt) > MAX_PATTERNS)
    return cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].tensor_types: at most %d patterns",
                      idx, MAX_PATTERNS);
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)tt, key, v) {
    size_t len = strlen(key);
    if (len == 0 || len > MAX_PATTERN_LEN)
      return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d].tensor_types: a pattern must have 1 to %d bytes", idx,
                        MAX_PATTERN_LEN);
    int t = gguf_type_by_name(v);
    if (t < 0)
      return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d].tensor_types.%s must be a ggml type name (e.g. \"q8_0\")", idx,
                        key);
    char re[MAX_PATTERN_LEN * 5 + 1];
    tt_pattern *p = &mx->patterns[mx->n_patterns];
    if (!translate_pattern(key, re, sizeof re) || regcomp(&p->re, re, REG_EXTENDED | REG_NOSUB) != 0)
      return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                        "steps[%d].tensor_types.%s is not a valid regular expression", idx, key);
    if (!(p->pattern = strdup(key))) {
      regfree(&p->re);
      return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
    }
    p->type = (cz_type)t;
    mx->n_patterns++;
  }
  return CZ_E_OK;
}

cz_err_code cz_mixture_parse(const json_t *step, int idx, cz_mixture **out, cz_error *err) {
  const char *name = json_string_value(json_object_get(step, "preset"));
  int pi = name ? preset_index(name) : -1;
  if (pi < 0) {
    char list[512];
    size_t n = 0;
    for (int i = 0; i < N_PRESETS && n < sizeof list; i++)
      n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", presets[i].name);
    return cz_err_set(err, CZ_E_INVALID_PARAMETER, "steps[%d].preset must be one of %s", idx, list);
  }
  cz_mixture *mx = calloc(1, sizeof *mx);
  if (!mx) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  mx->preset = pi;
  cz_err_code rc;
  if ((rc = parse_bool_field(step, "pure", idx, &mx->pure, err)) ||
      (rc = parse_bool_field(step, "leave_output_tensor", idx, &mx->leave_output, err)) ||
      (rc = parse_type_field(step, "output_tensor_type", idx, &mx->output_type, err)) ||
      (rc = parse_type_field(step, "token_embedding_type", idx, &mx->embd_type, err)) ||
      (rc = parse_patterns(json_object_get(step, "tensor_types"), idx, mx, err)))
    goto fail;
  const json_t *ft = json_object_get(step, "file_type");
  if (ft && (!json_is_integer(ft) || json_integer_value(ft) != presets[pi].ftype)) {
    rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                    "steps[%d].file_type: the file type of %s is %d (it follows from the preset)",
                    idx, presets[pi].name, presets[pi].ftype);
    goto fail;
  }
  *out = mx;
  return CZ_E_OK;
fail:
  cz_mixture_free(mx);
  return rc;
}

json_t *cz_mixture_describe(const cz_mixture *mx) {
  json_t *o = json_pack("{s:s, s:s}", "op", "quantize", "preset", presets[mx->preset].name);
  if (mx->pure) json_object_set_new(o, "pure", json_true());
  if (mx->leave_output) json_object_set_new(o, "leave_output_tensor", json_true());
  if (mx->output_type >= 0)
    json_object_set_new(o, "output_tensor_type", json_string(cz_type_get(mx->output_type)->name));
  if (mx->embd_type >= 0)
    json_object_set_new(o, "token_embedding_type", json_string(cz_type_get(mx->embd_type)->name));
  if (mx->n_patterns) {
    json_t *tt = json_object();
    for (int i = 0; i < mx->n_patterns; i++)
      json_object_set_new(tt, mx->patterns[i].pattern,
                          json_string(cz_type_get(mx->patterns[i].type)->name));
    json_object_set_new(o, "tensor_types", tt);
  }
  json_object_set_new(o, "file_type", json_integer(presets[mx->preset].ftype));
  return o;
}

int cz_mixture_n_presets(void) { return N_PRESETS; }

const char *cz_mixture_preset_at(int i, int *file_type, cz_type *default_type) {
  if (i < 0 || i >= N_PRESETS) return NULL;
  *file_type = presets[i].ftype;
  *default_type = presets[i].type;
  return presets[i].name;
}

const char *cz_mixture_preset_name(const cz_mixture *mx) { return presets[mx->preset].name; }
int cz_mixture_file_type(const cz_mixture *mx) { return presets[mx->preset].ftype; }

int cz_mixture_explicit_types(const cz_mixture *mx, cz_type *types, int max) {
  int n = 0;
  if (mx->output_type >= 0 && n < max) types[n++] = (cz_type)mx->output_type;
  if (mx->embd_type >= 0 && n < max) types[n++] = (cz_type)mx->embd_type;
  for (int i = 0; i < mx->n_patterns && n < max; i++) types[n++] = mx->patterns[i].type;
  return (mx->output_type >= 0) + (mx->embd_type >= 0) + mx->n_patterns;
}

/* ---- eligibility ---- */

/* ggml_n_dims: dimensions up to the last one larger than 1 (at least 1). */
static int ggml_n_dims(const cz_tensor *t) {
  for (int i = CZ_MAX_DIMS - 1; i >= 1; i--)
    if (i < t->n_dims && t->ne[i] > 1) return i + 1;
  return 1;
}

static bool has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

const char *cz_mixture_ineligible(const cz_tensor *t, bool quantize_output) {
  if (ggml_n_dims(t) < 2) return "1-D tensor (norms and biases are kept as they are)";
  for (int d = 0; d < t->n_dims; d++)
    if (t->ne[d] == 0) return "tensor has no elements";
  const char *name = t->name;
  size_t n = strlen(name);
  /* llama.cpp tests name.rfind("weight") == name.size() - 6, which also holds for a 5-byte
   * name without "weight" (both sides are npos); kept as it is. */
  const char *last = NULL;
  for (const char *p = strstr(name, "weight"); p; p = strstr(p + 1, "weight")) last = p;
  bool ends_weight = last ? (size_t)(last - name) == n - 6 : n == 5;
  if (!ends_weight) return "not a weight matrix";
  if (has(name, "_norm.weight")) return "norm tensor";
  if (!quantize_output && strcmp(name, "output.weight") == 0) return "leave_output_tensor";
  static const char *const excluded[] = {
      "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
      "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
      "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight",
      "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
      "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
      "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
      "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
      ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
      ".patch_merger", "a.rvq.codebook", "mm.a.code_embd", NULL};
  if (strcmp(name, "position_embd.weight") == 0 || strcmp(name, "token_types.weight") == 0)
    return "positional or token-type embedding";
  for (int i = 0; excluded[i]; i++)
    if (has(name, excluded[i])) return "excluded by name (router, small or auxiliary tensor)";
  return NULL;
}

/* ---- the model's hyperparameters the rules read ---- */

typedef struct {
  char arch[64];
  bool falcon, is_70b, bailingmoe3;
  int n_layer, n_expert;
  uint32_t n_head, n_head_kv;
} hparams;

/* An unsigned integer KV, or the first element of an integer array (per-layer values). */
static bool kv_uint(const cz_model *m, const char *arch, const char *suffix, uint32_t *out) {
  char key[160];
  snprintf(key, sizeof key, "%s.%s", arch, suffix);
  long k = cz_gguf_find_kv(m, key);
  if (k < 0) return false;
  const cz_gguf_kv *kv = &m->kv[k];
  const uint8_t *p = kv->raw;
  size_t len = kv->raw_len;
  cz_gguf_vtype t = kv->type;
  if (t == CZ_GGUF_ARRAY) {
    if (len < 12 || cz__le64(p + 4) == 0) return false;
    t = (cz_gguf_vtype)cz__le32(p);
    p += 12;
    len -= 12;
  }
  switch (t) {
    case CZ_GGUF_U32: case CZ_GGUF_I32:
      if (len < 4) return false;
      *out = cz__le32(p);
      return true;
    case CZ_GGUF_U16: case CZ_GGUF_I16:
      if (len < 2) return false;
      *out = (uint32_t)p[0] | (uint32_t)p[1] << 8;
      return true;
    case CZ_GGUF_U8: case CZ_GGUF_I8:
      if (len < 1) return false;
      *out = p[0];
      return true;
    default:
      return false;
  }
}

static int layer_of(const char *name) {
  int l;
  return sscanf(name, "blk.%d.", &l) == 1 ? l : -1;
}

static void read_hparams(const cz_model *m, hparams *h) {
  memset(h, 0, sizeof *h);
  long k = cz_gguf_find_kv(m, "general.architecture");
  const char *s;
  uint64_t len;
  if (k >= 0 && cz_gguf_kv_str(&m->kv[k], &s, &len) && len < sizeof h->arch) {
    memcpy(h->arch, s, (size_t)len);
    h->arch[len] = 0;
  }
  uint32_t v;
  if (kv_uint(m, h->arch, "block_count", &v)) {
    h->n_layer = (int)v;
  } else { /* no hyperparameters: count the blocks the tensor names show */
    for (size_t i = 0; i < m->n_tensors; i++) {
      int l = layer_of(m->tensors[i].name);
      if (l + 1 > h->n_layer) h->n_layer = l + 1;
    }
  }
  h->n_head = kv_uint(m, h->arch, "attention.head_count", &v) ? v : 0;
  h->n_head_kv = kv_uint(m, h->arch, "attention.head_count_kv", &v) ? v : h->n_head;
  h->n_expert = kv_uint(m, h->arch, "expert_count", &v) ? (int)v : 0;
  h->falcon = strcmp(h->arch, "falcon") == 0;
  h->bailingmoe3 = strcmp(h->arch, "bailingmoe3") == 0;
  /* llama-model.cpp: an 80-layer llama with grouped-query attention is the 70B */
  h->is_70b = strcmp(h->arch, "llama") == 0 && h->n_layer == 80 && h->n_head != h->n_head_kv;
}

static uint32_t n_gqa(const hparams *h) { return h->n_head_kv ? h->n_head / h->n_head_kv : 0; }

/* ---- categories and state ---- */

typedef enum {
  CAT_TOKEN_EMBD, CAT_ATTN_Q, CAT_ATTN_V, CAT_ATTN_K, CAT_ATTN_QKV, CAT_ATTN_KV_B,
  CAT_ATTN_OUTPUT, CAT_FFN_UP, CAT_FFN_GATE, CAT_FFN_DOWN, CAT_OUTPUT, CAT_OTHER
} category;

static bool is_token_embd(const char *n) {
  return strcmp(n, "token_embd.weight") == 0 || strcmp(n, "per_layer_token_embd.weight") == 0;
}

static category category_of(const char *n) {
  if (strcmp(n, "output.weight") == 0) return CAT_OUTPUT;
  if (is_token_embd(n)) return CAT_TOKEN_EMBD;
  if (has(n, "attn_qkv.weight")) return CAT_ATTN_QKV;
  if (has(n, "attn_kv_b.weight")) return CAT_ATTN_KV_B;
  if (has(n, "attn_v.weight")) return CAT_ATTN_V;
  if (has(n, "attn_k.weight")) return CAT_ATTN_K;
  if (has(n, "attn_q.weight")) return CAT_ATTN_Q;
  if (has(n, "attn_output.weight")) return CAT_ATTN_OUTPUT;
  if (has(n, "ffn_up")) return CAT_FFN_UP;
  if (has(n, "ffn_gate")) return CAT_FFN_GATE;
  if (has(n, "ffn_down")) return CAT_FFN_DOWN;
  return CAT_OTHER;
}

static bool is_attn_v_like(category c) {
  return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B;
}

typedef struct {
  const cz_mixture *mx;
  int ftype;
  hparams hp;
  bool has_imatrix, tied_embeddings;
  int n_attention_wv, i_attention_wv, n_ffn, i_ffn_down, i_ffn_gate, i_ffn_up;
} state;

static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* Layer of a tensor for the layer-dependent rules: the running counter, except in MoE models,
 * where expert tensors are not consecutive and the name says the layer. */
static cz_err_code layer_info(const state *s, int counter, const char *name, int *layer,
                              cz_error *err) {
  *layer = counter;
  if (s->hp.n_expert > 1) {
    if (sscanf(name, "blk.%d.", layer) != 1)
      return cz_err_set(err, CZ_E_UNSUPPORTED_INPUT, "tensor %s: cannot tell its layer", name);
    if (*layer < 0 || *layer >= s->n_ffn)
      return cz_err_set(err, CZ_E_UNSUPPORTED_INPUT, "tensor %s: layer %d is not in [0, %d)",
                        name, *layer, s->n_ffn);
  }
  return CZ_E_OK;
}

/* llama_tensor_get_type_impl for the offered ftypes. */
static cz_err_code mixture_type(state *s, const cz_tensor *t, category cat, cz_type *type,
                                cz_error *err) {
  const int ft = s->ftype;
  const hparams *hp = &s->hp;
  const char *name = t->name;
  cz_type nt = *type;
  cz_err_code rc;
  int il;
  if (cat == CAT_OUTPUT || (s->tied_embeddings && cat == CAT_TOKEN_EMBD)) {
    if (s->mx->output_type >= 0) {
      nt = (cz_type)s->mx->output_type;
    } else {
      const int64_t qk = cz_type_get(nt)->blck_size;
      if (ft == FT_MXFP4_MOE) nt = CZ_TYPE_Q8_0;
      else if (hp->falcon || t->ne[0] % qk != 0) nt = CZ_TYPE_Q8_0;
      else if (nt != CZ_TYPE_Q8_0) nt = CZ_TYPE_Q6_K;
    }
  } else if (ft == FT_MXFP4_MOE) {
    /* MoE expert tensors -> MXFP4, everything else -> Q8_0 */
    bool expert_role = cat == CAT_FFN_UP || cat == CAT_FFN_GATE || cat == CAT_FFN_DOWN;
    nt = t->n_dims >= 3 && t->ne[2] > 1 && (!hp->bailingmoe3 || expert_role) ? CZ_TYPE_MXFP4
                                                                             : CZ_TYPE_Q8_0;
  } else if (cat == CAT_TOKEN_EMBD) {
    if (s->mx->embd_type >= 0) nt = (cz_type)s->mx->embd_type;
    else if (ft == FT_TQ1_0 || ft == FT_TQ2_0) nt = CZ_TYPE_Q4_K;
  } else if (is_attn_v_like(cat)) {
    if (ft == FT_Q2_K) nt = n_gqa(hp) >= 4 ? CZ_TYPE_Q4_K : CZ_TYPE_Q3_K;
    else if (ft == FT_Q2_K_S && n_gqa(hp) >= 4) nt = CZ_TYPE_Q4_K;
    else if (ft == FT_Q3_K_M) nt = s->i_attention_wv < 2 ? CZ_TYPE_Q5_K : CZ_TYPE_Q4_K;
    else if (ft == FT_Q3_K_L) nt = CZ_TYPE_Q5_K;
    else if ((ft == FT_IQ4_NL || ft == FT_IQ4_XS) && n_gqa(hp) >= 4) nt = CZ_TYPE_Q5_K;
    else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) &&
             use_more_bits(s->i_attention_wv, s->n_attention_wv))
      nt = CZ_TYPE_Q6_K;
    else if (ft == FT_Q4_K_S && s->i_attention_wv < 4) nt = CZ_TYPE_Q5_K;
    /* the 70B shares attn_v over 8 heads: more bits there are nearly free */
    if (hp->is_70b && (nt == CZ_TYPE_Q3_K || nt == CZ_TYPE_Q4_K)) nt = CZ_TYPE_Q5_K;
    if (hp->n_expert == 8) nt = CZ_TYPE_Q8_0;
    ++s->i_attention_wv;
  } else if (cat == CAT_ATTN_K) {
    if (hp->n_expert == 8) nt = CZ_TYPE_Q8_0;
  } else if (cat == CAT_FFN_DOWN) {
    if ((rc = layer_info(s, s->i_ffn_down, name, &il, err))) return rc;
    const int n = s->n_ffn;
    if (ft == FT_Q2_K) {
      nt = CZ_TYPE_Q3_K;
    } else if (ft == FT_Q2_K_S) {
      if (il < n / 8) nt = CZ_TYPE_Q4_K;
    } else if (ft == FT_Q3_K_M) {
      nt = il < n / 16                                    ? CZ_TYPE_Q5_K
           : !hp->falcon || use_more_bits(il, n)          ? CZ_TYPE_Q4_K
                                                          : CZ_TYPE_Q3_K;
    } else if (ft == FT_Q3_K_L) {
      nt = hp->falcon ? CZ_TYPE_Q4_K : CZ_TYPE_Q5_K;
    } else if (ft == FT_Q4_K_M) {
      if (hp->falcon)
        nt = il < n / 16 ? CZ_TYPE_Q6_K : use_more_bits(il, n) ? CZ_TYPE_Q5_K : CZ_TYPE_Q4_K;
      else if (use_more_bits(il, n))
        nt = CZ_TYPE_Q6_K;
    } else if (il < n / 8 && (ft == FT_IQ4_NL || ft == FT_IQ4_XS) && !s->has_imatrix) {
      nt = CZ_TYPE_Q5_K;
    } else if (ft == FT_Q5_K_M && use_more_bits(il, n)) {
      nt = CZ_TYPE_Q6_K;
    } else if (ft == FT_Q4_K_S && !hp->falcon && il < n / 8) {
      nt = CZ_TYPE_Q5_K;
    } else if ((ft == FT_Q4_0 || ft == FT_Q5_0) && s->has_imatrix && il < n / 8) {
      /* guards the first ffn_down layers, only with an imatrix so that a run without one
       * stays what it always was */
      nt = ft == FT_Q4_0 ? CZ_TYPE_Q4_1 : CZ_TYPE_Q5_1;
    }
    ++s->i_ffn_down;
  } else if (cat == CAT_ATTN_OUTPUT) {
    if (!hp->falcon) {
      if (hp->n_expert == 8) {
        if (ft == FT_Q2_K || ft == FT_Q3_K_S || ft == FT_Q3_K_M || ft == FT_IQ4_NL ||
            ft == FT_Q4_K_S || ft == FT_Q4_K_M || ft == FT_IQ4_XS)
          nt = CZ_TYPE_Q5_K;
      } else {
        if (ft == FT_Q2_K) nt = CZ_TYPE_Q3_K;
        else if (ft == FT_Q3_K_M) nt = CZ_TYPE_Q4_K;
        else if (ft == FT_Q3_K_L) nt = CZ_TYPE_Q5_K;
      }
    } else if (ft == FT_Q3_K_L) {
      nt = CZ_TYPE_Q4_K;
    }
  } else if (cat == CAT_FFN_GATE) {
    if ((rc = layer_info(s, s->i_ffn_gate, name, &il, err))) return rc;
    ++s->i_ffn_gate;
  } else if (cat == CAT_FFN_UP) {
    if ((rc = layer_info(s, s->i_ffn_up, name, &il, err))) return rc;
    ++s->i_ffn_up;
  }
  *type = nt;
  return CZ_E_OK;
}

static const char *const FALLBACK_NOTE =
    "row length is not a multiple of the type's block size: llama-quantize's fallback type";

/* tensor_type_fallback: a type whose block does not divide the rows gets a compatible one. */
static cz_err_code fallback(const cz_tensor *t, cz_type *type, const char **note, cz_error *err) {
  const int64_t nx = t->ne[0];
  if (nx % cz_type_get(*type)->blck_size == 0) return CZ_E_OK;
  cz_type f;
  switch (*type) {
    case CZ_TYPE_IQ1_S: case CZ_TYPE_IQ1_M: case CZ_TYPE_IQ2_XXS: case CZ_TYPE_IQ2_XS:
    case CZ_TYPE_IQ2_S: case CZ_TYPE_IQ3_XXS: case CZ_TYPE_IQ3_S: case CZ_TYPE_IQ4_XS:
      f = CZ_TYPE_IQ4_NL; break;
    case CZ_TYPE_Q2_K: case CZ_TYPE_Q3_K: case CZ_TYPE_TQ1_0: case CZ_TYPE_TQ2_0:
      f = CZ_TYPE_Q4_0; break;
    case CZ_TYPE_Q4_K: f = CZ_TYPE_Q5_0; break;
    case CZ_TYPE_Q5_K: f = CZ_TYPE_Q5_1; break;
    case CZ_TYPE_Q6_K: f = CZ_TYPE_Q8_0; break;
    default:
      return cz_err_set(err, CZ_E_UNSUPPORTED_INPUT,
                        "tensor %s: rows of %lld values do not fit %s (blocks of %lld) and "
                        "llama-quantize defines no fallback for it", t->name, (long long)nx,
                        cz_type_get(*type)->name, (long long)cz_type_get(*type)->blck_size);
  }
  if (nx % cz_type_get(f)->blck_size != 0) f = CZ_TYPE_F16;
  *type = f;
  *note = FALLBACK_NOTE;
  return CZ_E_OK;
}

/* An explicitly requested type goes in as it is (llama-quantize applies no fallback to it). */
static cz_err_code explicit_fits(const cz_tensor *t, cz_type type, const char *what,
                                 cz_error *err) {
  const int64_t b = cz_type_get(type)->blck_size;
  if (t->ne[0] % b == 0) return CZ_E_OK;
  return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                    "%s: %s does not fit tensor %s (rows of %lld values, blocks of %lld)", what,
                    cz_type_get(type)->name, t->name, (long long)t->ne[0], (long long)b);
}

/* llama_tensor_get_type */
static cz_err_code tensor_type(state *s, const cz_tensor *t, cz_type *type, const char **note,
                               cz_error *err) {
  const cz_mixture *mx = s->mx;
  const category cat = category_of(t->name);
  if (mx->embd_type >= 0 && cat == CAT_TOKEN_EMBD) {
    *type = (cz_type)mx->embd_type;
    return explicit_fits(t, *type, "token_embedding_type", err);
  }
  if (mx->output_type >= 0 && cat == CAT_OUTPUT) {
    *type = (cz_type)mx->output_type;
    return explicit_fits(t, *type, "output_tensor_type", err);
  }
  cz_type nt = presets[mx->preset].type;
  if (cz_type_get(nt)->is_quantized) {
    bool manual = false;
    /* the first pattern found anywhere in the name wins; the layer counters then skip the
     * tensor, as they do in llama.cpp */
    for (int i = 0; i < mx->n_patterns && !manual; i++)
      if (regexec(&mx->patterns[i].re, t->name, 0, NULL, 0) == 0) {
        nt = mx->patterns[i].type;
        manual = true;
      }
    cz_err_code rc;
    if (!manual && !mx->pure && (rc = mixture_type(s, t, cat, &nt, err))) return rc;
    if ((rc = fallback(t, &nt, note, err))) return rc;
  }
  *type = nt;
  return CZ_E_OK;
}

/* tensor_requires_imatrix, plus whatever the type table says needs one. */
static bool needs_imatrix(const char *name, cz_type type, int ftype) {
  if (is_token_embd(name) || strcmp(name, "output.weight") == 0) return false;
  switch (type) {
    case CZ_TYPE_IQ3_XXS: case CZ_TYPE_IQ2_XXS: case CZ_TYPE_IQ2_XS: case CZ_TYPE_IQ2_S:
    case CZ_TYPE_IQ1_M: case CZ_TYPE_IQ1_S:
      return true;
    case CZ_TYPE_Q2_K:
      if (ftype == FT_Q2_K_S) return true;
      break;
    default:
      break;
  }
  return cz_type_get(type)->requires_imatrix;
}

/* llama.cpp's weight order (llama_model_loader's weight_name_comparer): layer, then name. */
typedef struct {
  const cz_model *m;
  size_t i;
  int layer;
} order_item;

static int order_cmp(const void *a, const void *b) {
  const order_item *x = a, *y = b;
  if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
  return strcmp(x->m->tensors[x->i].name, y->m->tensors[y->i].name);
}

cz_err_code cz_mixture_plan(const cz_mixture *mx, const cz_model *m, bool has_imatrix,
                            cz_mixture_choice *choices, cz_error *err) {
  state s = {.mx = mx, .ftype = presets[mx->preset].ftype, .has_imatrix = has_imatrix,
             .tied_embeddings = true};
  read_hparams(m, &s.hp);
  s.n_ffn = s.hp.n_layer;
  for (size_t i = 0; i < m->n_tensors; i++) {
    category c = category_of(m->tensors[i].name);
    if (is_attn_v_like(c)) s.n_attention_wv++;
    if (c == CAT_OUTPUT) s.tied_embeddings = false;
  }
  order_item *order = malloc((m->n_tensors ? m->n_tensors : 1) * sizeof *order);
  if (!order) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  for (size_t i = 0; i < m->n_tensors; i++) {
    order[i].m = m;
    order[i].i = i;
    order[i].layer = layer_of(m->tensors[i].name);
  }
  qsort(order, m->n_tensors, sizeof *order, order_cmp);
  cz_err_code rc = CZ_E_OK;
  for (size_t k = 0; k < m->n_tensors && !rc; k++) {
    const cz_tensor *t = &m->tensors[order[k].i];
    cz_mixture_choice *c = &choices[order[k].i];
    memset(c, 0, sizeof *c);
    c->type = t->type;
    c->note = cz_mixture_ineligible(t, !mx->leave_output);
    if (c->note) continue;
    cz_type nt;
    if ((rc = tensor_type(&s, t, &nt, &c->note, err))) break;
    c->type = nt;
    c->quantize = nt != t->type;
    if (!c->quantize) c->note = "already of the chosen type";
    else c->requires_imatrix = needs_imatrix(t->name, nt, s.ftype);
  }
  free(order);
  return rc;
}

/* ---- size budget ---- */

#define MAX_CANDIDATES 16
#define SAMPLE_ROWS 32   /* rows per tensor whose error is measured for each candidate */

struct cz_budget {
  double target_bpw;      /* > 0, or 0 when target_bytes is given */
  uint64_t target_bytes;
  int n_types;
  cz_type types[MAX_CANDIDATES];
  bool types_given;
};

static const cz_type default_candidates[] = {CZ_TYPE_Q2_K, CZ_TYPE_Q3_K, CZ_TYPE_Q4_K,
                                             CZ_TYPE_Q5_K, CZ_TYPE_Q6_K, CZ_TYPE_Q8_0,
                                             CZ_TYPE_Q4_0, CZ_TYPE_Q5_0};

void cz_budget_free(cz_budget *b) { free(b); }

cz_err_code cz_budget_parse(const json_t *step, int idx, cz_budget **out, cz_error *err) {
  const json_t *bpw = json_object_get(step, "target_bpw"), *bytes = json_object_get(step, "target_bytes");
  if ((bpw != NULL) == (bytes != NULL))
    return cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d]: give one of target_bpw (bits per weight) or target_bytes", idx);
  cz_budget *b = calloc(1, sizeof *b);
  if (!b) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  cz_err_code rc = CZ_E_OK;
  if (bpw) {
    b->target_bpw = json_number_value(bpw);
    if (!json_is_number(bpw) || !(b->target_bpw > 0.0 && b->target_bpw <= 32.0))
      rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].target_bpw must be a number above 0 and at most 32", idx);
  } else if (!json_is_integer(bytes) || json_integer_value(bytes) < 1) {
    rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                    "steps[%d].target_bytes must be a positive integer (the output file's size)", idx);
  } else {
    b->target_bytes = (uint64_t)json_integer_value(bytes);
  }
  const json_t *types = json_object_get(step, "types");
  if (!rc && types) {
    if (!json_is_array(types) || json_array_size(types) == 0 ||
        json_array_size(types) > MAX_CANDIDATES) {
      rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                      "steps[%d].types must be an array of 1 to %d ggml type names", idx,
                      MAX_CANDIDATES);
    } else {
      b->types_given = true;
      for (size_t i = 0; i < json_array_size(types) && !rc; i++) {
        int t = gguf_type_by_name(json_array_get(types, i));
        bool dup = false;
        for (int k = 0; k < b->n_types; k++) dup |= (int)b->types[k] == t;
        if (t < 0 || dup)
          rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                          "steps[%d].types[%zu] must be a ggml type name, each once", idx, i);
        else
          b->types[b->n_types++] = (cz_type)t;
      }
    }
  } else if (!rc) {
    b->n_types = (int)(sizeof default_candidates / sizeof default_candidates[0]);
    memcpy(b->types, default_candidates, sizeof default_candidates);
  }
  if (rc) {
    free(b);
    return rc;
  }
  *out = b;
  return CZ_E_OK;
}

json_t *cz_budget_describe(const cz_budget *b) {
  json_t *o = json_pack("{s:s}", "op", "quantize");
  if (b->target_bpw > 0) json_object_set_new(o, "target_bpw", json_real(b->target_bpw));
  else json_object_set_new(o, "target_bytes", json_integer((json_int_t)b->target_bytes));
  json_t *t = json_array();
  for (int i = 0; i < b->n_types; i++) json_array_append_new(t, json_string(cz_type_get(b->types[i])->name));
  json_object_set_new(o, "types", t);
  return o;
}

int cz_budget_types(const cz_budget *b, cz_type *types, int max) {
  for (int i = 0; i < b->n_types && i < max; i++) types[i] = b->types[i];
  return b->n_types;
}

typedef struct {
  int type;        /* index in b->types */
  uint64_t bytes;
  double err;
} option;

typedef struct {
  size_t tensor;
  int n;           /* options on the lower convex hull, by increasing bytes */
  option hull[MAX_CANDIDATES];
  int at;          /* the option chosen so far */
} item;

/* Weighted squared error of quantizing rows of t to type, estimated from a sample of rows:
 * weights are the importance of each column relative to the tensor's mean importance (1
 * without a calibration), so that tensors with and without calibration data compare. */
static cz_err_code tensor_error(const cz_tensor *t, cz_type type, const float *imatrix,
                                double *out, cz_error *err) {
  const cz_type_traits *in = cz_type_get(t->type), *tr = cz_type_get(type);
  const int64_t ncols = t->ne[0], nrows = cz_tensor_nelements(t) / ncols;
  const int64_t rows_per_expert = t->n_dims >= 3 ? t->ne[1] : nrows;
  const uint64_t in_row = cz_type_row_size(t->type, ncols), q_row = cz_type_row_size(type, ncols);
  const int64_t samples = nrows < SAMPLE_ROWS ? nrows : SAMPLE_ROWS;
  float *x = malloc(sizeof(float) * (size_t)ncols * 2);
  uint8_t *q = malloc((size_t)q_row);
  if (!x || !q) {
    free(x);
    free(q);
    return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  }
  float *y = x + ncols;
  double total = 0;
  for (int64_t k = 0; k < samples; k++) {
    const int64_t r = k * nrows / samples;
    const float *w = imatrix ? imatrix + (r / rows_per_expert) * ncols : NULL;
    in->to_f32(t->data + (uint64_t)r * in_row, x, ncols);
    if (tr->quantize) tr->quantize(x, q, 1, ncols, w);
    else tr->from_f32(x, q, ncols);
    tr->to_f32(q, y, ncols);
    double mean_w = 0;
    if (w) {
      for (int64_t j = 0; j < ncols; j++) mean_w += w[j];
      mean_w /= (double)ncols;
    }
    double e = 0;
    for (int64_t j = 0; j < ncols; j++) {
      double d = (double)x[j] - (double)y[j];
      e += (w && mean_w > 0 ? w[j] / mean_w : 1.0) * d * d;
    }
    total += e;
  }
  free(x);
  free(q);
  *out = samples ? total * (double)nrows / (double)samples : 0;
  if (!isfinite(*out))
    return cz_err_set(err, CZ_E_NON_FINITE, "tensor %s holds NaN or Inf values", t->name);
  return CZ_E_OK;
}

static int option_cmp(const void *a, const void *b) {
  const option *x = a, *y = b;
  if (x->bytes != y->bytes) return x->bytes < y->bytes ? -1 : 1;
  return x->err < y->err ? -1 : x->err > y->err;
}

/* Keep the options on the lower convex hull of (bytes, error): the ones a greedy
 * error-per-byte ascent can stop at. */
static void convex_hull(option *o, int n, item *it) {
  qsort(o, (size_t)n, sizeof *o, option_cmp);
  int h = 0;
  for (int i = 0; i < n; i++) {
    if (h > 0 && o[i].err >= it->hull[h - 1].err) continue;  /* more bytes, no less error */
    while (h >= 2) {
      const option *a = &it->hull[h - 2], *b = &it->hull[h - 1];
      /* b is above the segment a-o[i]: its slope from a is flatter than o[i]'s */
      double s_ab = (a->err - b->err) / (double)(b->bytes - a->bytes);
      double s_ai = (a->err - o[i].err) / (double)(o[i].bytes - a->bytes);
      if (s_ab <= s_ai) h--;
      else break;
    }
    it->hull[h++] = o[i];
  }
  it->n = h;
}

static bool float_input(cz_type t) {
  return t == CZ_TYPE_F32 || t == CZ_TYPE_F16 || t == CZ_TYPE_BF16;
}

cz_err_code cz_budget_plan(const cz_budget *b, const cz_model *m, const struct cz_imatrix *im,
                           uint64_t header_bytes, cz_mixture_choice *choices,
                           cz_budget_result *res, cz_error *err) {
  memset(res, 0, sizeof *res);
  item *items = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *items);
  if (!items) return cz_err_set(err, CZ_E_NO_MEMORY, "out of memory");
  size_t n_items = 0;
  uint64_t fixed = 0, elements = 0;
  cz_err_code rc = CZ_E_OK;
  for (size_t i = 0; i < m->n_tensors && !rc; i++) {
    const cz_tensor *t = &m->tensors[i];
    cz_mixture_choice *c = &choices[i];
    memset(c, 0, sizeof *c);
    c->type = t->type;
    elements += (uint64_t)cz_tensor_nelements(t);
    /* llama.cpp's names in a GGUF; Hugging Face's rules (layernorm, ...) otherwise */
    c->note = m->format == CZ_FORMAT_GGUF ? cz_mixture_ineligible(t, true) : cz_method_ineligible(t);
    if (!c->note && !float_input(t->type)) c->note = "input type is not F32, F16 or BF16";
    item *it = &items[n_items];
    option o[MAX_CANDIDATES];
    int n = 0;
    const float *w = NULL;
    if (!c->note && im) {
      int64_t nw = 0;
      w = cz_imatrix_find(im, t->name, &nw);
      if (w && nw != t->ne[0] * (t->n_dims >= 3 ? t->ne[2] : 1)) w = NULL;
    }
    for (int k = 0; !c->note && k < b->n_types && !rc; k++) {
      const cz_type ty = b->types[k];
      if (t->ne[0] % cz_type_get(ty)->blck_size != 0) continue;
      o[n].type = k;
      o[n].bytes = cz_type_row_size(ty, t->ne[0]) * (uint64_t)(cz_tensor_nelements(t) / t->ne[0]);
      rc = tensor_error(t, ty, w, &o[n].err, err);
      n++;
    }
    if (rc) break;
    if (!c->note && n == 0) c->note = "row length fits none of the candidate types";
    if (c->note) {
      fixed += t->nbytes;
      continue;
    }
    it->tensor = i;
    convex_hull(o, n, it);
    res->min_bytes += it->hull[0].bytes;
    n_items++;
  }
  if (rc) goto done;
  /* the budget for the tensors we choose types for */
  uint64_t total = b->target_bpw > 0 ? (uint64_t)(b->target_bpw * (double)elements / 8.0)
                                     : (b->target_bytes > header_bytes ? b->target_bytes - header_bytes : 0);
  res->budget_bytes = total > fixed ? total - fixed : 0;
  if (res->min_bytes > res->budget_bytes) {
    rc = cz_err_set(err, CZ_E_INVALID_PARAMETER,
                    "the budget leaves %llu bytes for the quantized tensors, but the smallest "
                    "candidate types need %llu: raise %s",
                    (unsigned long long)res->budget_bytes, (unsigned long long)res->min_bytes,
                    b->target_bpw > 0 ? "target_bpw" : "target_bytes");
    goto done;
  }
  /* greedy ascent: always the upgrade with the most error removed per byte that still fits */
  uint64_t used = res->min_bytes;
  for (;;) {
    size_t best = SIZE_MAX;
    double best_slope = 0;
    for (size_t k = 0; k < n_items; k++) {
      item *it = &items[k];
      if (it->at + 1 >= it->n) continue;
      const option *a = &it->hull[it->at], *nx = &it->hull[it->at + 1];
      if (nx->bytes - a->bytes > res->budget_bytes - used) continue;
      double slope = (a->err - nx->err) / (double)(nx->bytes - a->bytes);
      if (best == SIZE_MAX || slope > best_slope) {
        best = k;
        best_slope = slope;
      }
    }
    if (best == SIZE_MAX) break;
    item *it = &items[best];
    used += it->hull[it->at + 1].bytes - it->hull[it->at].bytes;
    it->at++;
  }
  res->chosen_bytes = used;
  for (size_t k = 0; k < n_items; k++) {
    const item *it = &items[k];
    const cz_tensor *t = &m->tensors[it->tensor];
    cz_mixture_choice *c = &choices[it->tensor];
    c->type = b->types[it->hull[it->at].type];
    c->quantize = c->type != t->type;
    if (!c->quantize) c->note = "already of the chosen type";
    c->requires_imatrix = cz_type_get(c->type)->requires_imatrix && !is_token_embd(t->name) &&
                          strcmp(t->name, "output.weight") != 0;
    res->error += it->hull[it->at].err;
  }
done:
  free(items);
  return rc;
}
