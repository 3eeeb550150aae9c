/* cz_api_openapi: GET /v1/openapi.json, the OpenAPI 3 description of this API.
 *
 * The document is api/openapi.json, written by hand and built into the binary
 * (tools/embed-file.sh -> api/cz_openapi_doc.c). tests/e2e/test_service.sh checks that it
 * names exactly the routes of cz_api.c's table (`compressd routes`) and that every $ref in it
 * resolves: a route added without its documentation fails the suite.
 */
#include <stdio.h>
#include <string.h>

#include "cz_api_service.h"

/* Generated (api/cz_openapi_doc.c). */
extern const unsigned char cz_openapi_json[];
extern const size_t cz_openapi_json_len;
extern const char cz_openapi_json_etag[];

enum MHD_Result cz_api_openapi(cz_req *r) {
  const char *inm = cz_req_header(r, "If-None-Match");
  bool fresh = inm && strcmp(inm, cz_openapi_json_etag) == 0;
  struct MHD_Response *resp = MHD_create_response_from_buffer(
      fresh ? 0 : cz_openapi_json_len, fresh ? (void *)"" : (void *)cz_openapi_json,
      MHD_RESPMEM_PERSISTENT);
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", "application/json");
  MHD_add_response_header(resp, "ETag", cz_openapi_json_etag);
  MHD_add_response_header(resp, "Cache-Control", "no-cache");
  return cz_reply_mhd(r, fresh ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, resp);
}

/* For `compressd routes`: one "METHOD PATTERN" line per route, in table order. */
void cz_api_print_routes(FILE *f) {
  int n;
  const cz_route *routes = cz_api_routes(&n);
  for (int i = 0; i < n; i++) fprintf(f, "%s %s\n", routes[i].method, routes[i].pattern);
}
