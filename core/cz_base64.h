/* cz_base64: RFC 4648 base64, standard (section 4, padded) and URL-safe (section 5, unpadded).
 * Used for webhook signatures and secrets (standard) and for opaque page tokens (URL-safe).
 * Thread: pure functions, no state. */
#ifndef CZ_BASE64_H
#define CZ_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Characters needed to encode n bytes, plus the NUL (padded form; the unpadded form fits). */
#define CZ_BASE64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4 + 1)

/* Encode len bytes into out (at least CZ_BASE64_ENCODED_LEN(len) chars); NUL-terminated.
 * url: the "-_" alphabet without '=' padding; otherwise "+/" with padding. Returns the length. */
size_t cz_base64_encode(const void *data, size_t len, bool url, char *out);

/* Decode exactly one canonical encoding (the same alphabet and padding rule as the encoder;
 * no whitespace, no non-zero leftover bits) into out (cap bytes). Returns false on any other
 * input or if the result would not fit; *out_len gets the decoded length. */
bool cz_base64_decode(const char *s, size_t slen, bool url, uint8_t *out, size_t cap,
                      size_t *out_len);

#endif
