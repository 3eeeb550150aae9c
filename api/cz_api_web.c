/* cz_api_web: serves the embedded dashboard files. */
#include "cz_api_web.h"

#include <string.h>

/* The pages use only their own files (no inline script or style, no CDN) and the API of the
 * server that served them; data: and blob: images are the SVG charts and downloads. */
#define CSP                                                                                  \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "   \
  "connect-src 'self'; font-src 'self'; form-action 'none'; frame-ancestors 'none'; "        \
  "base-uri 'none'"

const cz_web_file *cz_web_find(const char *name) {
  for (int i = 0; i < cz_web_files_count; i++)
    if (strcmp(cz_web_files[i].name, name) == 0) return &cz_web_files[i];
  return NULL;
}

static enum MHD_Result send_file(cz_req *r, const cz_web_file *f) {
  const char *inm = cz_req_header(r, "If-None-Match");
  bool fresh = inm && strstr(inm, f->etag) != NULL;
  struct MHD_Response *resp = MHD_create_response_from_buffer(
      fresh ? 0 : f->len, fresh ? (void *)"" : (void *)f->data, MHD_RESPMEM_PERSISTENT);
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", f->type);
  MHD_add_response_header(resp, "ETag", f->etag);
  MHD_add_response_header(resp, "Cache-Control", "no-cache");
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
  MHD_add_response_header(resp, "Content-Security-Policy", CSP);
  /* through cz_http: X-Request-Id, the status in the request log and the metrics */
  return cz_reply_mhd(r, fresh ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, resp);
}

enum MHD_Result cz_web_index(cz_req *r) {
  const cz_web_file *f = cz_web_find("index.html");
  if (!f) return cz_reply_error(r, CZ_E_NOT_FOUND, "this build has no dashboard");
  return send_file(r, f);
}

enum MHD_Result cz_web_file_get(cz_req *r) {
  const cz_web_file *f = cz_web_find(r->id);
  if (!f) return cz_reply_error(r, CZ_E_NOT_FOUND, "no such file: /ui/%s", r->id);
  return send_file(r, f);
}
