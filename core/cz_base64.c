/* cz_base64: RFC 4648 base64 encode/decode, strict on input since it decodes client data. */
#include "cz_base64.h"

static const char STD[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t cz_base64_encode(const void *data, size_t len, bool url, char *out) {
  const uint8_t *p = data;
  const char *a = url ? URL : STD;
  size_t o = 0, i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    out[o++] = a[v >> 18];
    out[o++] = a[(v >> 12) & 63];
    out[o++] = a[(v >> 6) & 63];
    out[o++] = a[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
    out[o++] = a[v >> 18];
    out[o++] = a[(v >> 12) & 63];
    if (i + 1 < len) out[o++] = a[(v >> 6) & 63];
    else if (!url) out[o++] = '=';
    if (!url) out[o++] = '=';
  }
  out[o] = '\0';
  return o;
}

static int value(char c, bool url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

bool cz_base64_decode(const char *s, size_t slen, bool url, uint8_t *out, size_t cap,
                      size_t *out_len) {
  size_t pad = 0;
  if (!url) {
    if (slen % 4) return false;
    while (pad < 2 && slen > pad && s[slen - 1 - pad] == '=') pad++;
  } else if (slen % 4 == 1) {
    return false;  /* no encoder produces a single leftover character */
  }
  size_t n = slen - pad, o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = value(s[i], url);
    if (v < 0) return false;
    acc = (acc << 6 | (uint32_t)v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (o >= cap) return false;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  /* canonical form only: leftover bits must be zero, so one token has one spelling */
  if (bits && (acc & ((1u << bits) - 1))) return false;
  if (!url && pad != (4 - n % 4) % 4) return false;
  *out_len = o;
  return true;
}
