/* cz_api_web: the web dashboard's static files, built into the binary (web/embed-web.sh).
 *
 * GET / answers with index.html, GET /ui/NAME with the file NAME of web/. Each answer carries
 * a strong ETag (If-None-Match -> 304), Cache-Control: no-cache (revalidated on each load, so
 * an upgraded daemon is picked up at once) and a Content-Security-Policy that lets the pages
 * load only their own scripts and styles and talk only to this server.
 *
 * Thread: the table is constant; the handlers run on any HTTP thread.
 */
#ifndef CZ_API_WEB_H
#define CZ_API_WEB_H

#include <stddef.h>

#include "cz_http.h"

typedef struct {
  const char *name;         /* base name under /ui/: "app.js" */
  const char *type;         /* Content-Type */
  const char *etag;         /* quoted, e.g. "\"0123…\"" */
  const unsigned char *data;
  size_t len;
} cz_web_file;

/* Generated (api/cz_web_files.c). */
extern const cz_web_file cz_web_files[];
extern const int cz_web_files_count;

/* The embedded file with this base name, or NULL. */
const cz_web_file *cz_web_find(const char *name);

enum MHD_Result cz_web_index(cz_req *r);   /* GET / */
enum MHD_Result cz_web_file_get(cz_req *r); /* GET /ui/{id} */

#endif
