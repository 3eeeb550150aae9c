/* cz_err: lookups into the error-code table of cz_err.h. */
#include "cz_err.h"

#include <stdarg.h>
#include <stdio.h>

const char *cz_err_name(cz_err_code code) {
  switch (code) {
#define CZ_ERR_NAME(sfx, id, name, http) case CZ_E_##sfx: return name;
    CZ_ERR_MAP(CZ_ERR_NAME)
#undef CZ_ERR_NAME
  }
  return "internal";
}

int cz_err_http_status(cz_err_code code) {
  switch (code) {
#define CZ_ERR_HTTP(sfx, id, name, http) case CZ_E_##sfx: return http;
    CZ_ERR_MAP(CZ_ERR_HTTP)
#undef CZ_ERR_HTTP
  }
  return 500;
}

cz_err_code cz_err_set(cz_error *err, cz_err_code code, const char *fmt, ...) {
  if (err == NULL) return code;
  err->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return code;
}
