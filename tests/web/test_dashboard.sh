#!/bin/sh
# test_dashboard: the web dashboard in a real browser. Debian's chromium, driven by
# playwright-core (npm, pinned in tests/web/package-lock.json and installed with `npm ci` into
# the build tree), walks through the pages against a real daemon: upload, submit, progress to
# done, job detail, download (sha256 checked), report, comparison, list filters. Screenshots of
# every view go to $CZ_BUILDDIR/tests/web/screenshots/. SKIPs only when chromium is missing.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

CHROMIUM=${CZ_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  echo "1..0 # SKIP $CHROMIUM is missing (apt-get install chromium)"
  exit 0
fi

# ---- playwright-core, from the lock file, into the build tree (the source may be read-only) ----
NPMDIR=$CZ_BUILDDIR/tests/web/npm
mkdir -p "$NPMDIR"
if ! cmp -s "$CZ_SRCDIR/tests/web/package-lock.json" "$NPMDIR/package-lock.json" ||
   [ ! -f "$NPMDIR/node_modules/playwright-core/package.json" ]; then
  cp "$CZ_SRCDIR/tests/web/package.json" "$CZ_SRCDIR/tests/web/package-lock.json" "$NPMDIR/"
  chmod u+w "$NPMDIR/package.json" "$NPMDIR/package-lock.json"
  if (cd "$NPMDIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) >"$T_TMP/npm.log" 2>&1; then
    ok "npm ci installed playwright-core $(jq -r .version "$NPMDIR/node_modules/playwright-core/package.json")"
  else
    not_ok "npm ci installed playwright-core"
    diag "$(tail -20 "$T_TMP/npm.log")"
    t_done
    exit 1
  fi
else
  ok "playwright-core $(jq -r .version "$NPMDIR/node_modules/playwright-core/package.json") already installed from the lock file"
fi
diag "$(node --version 2>&1), $("$CHROMIUM" --version 2>/dev/null | head -1)"

# ---- a daemon, the static files ----
DATA=$(mktemp -d "$T_TMP/data.XXXXXX")
cz_start "$DATA" --workers 2 || bail "cannot start compressd"

req GET /
is "GET / is the dashboard (200, text/html)" "$R_STATUS $(header Content-Type)" "200 text/html; charset=utf-8"
etag=$(header ETag)
req GET /ui/app.js
is "GET /ui/app.js is JavaScript" "$R_STATUS $(header Content-Type)" "200 text/javascript; charset=utf-8"
req GET / -H "If-None-Match: $etag"
is "GET / with the ETag is 304" "$R_STATUS" 304
req GET /ui/nothing.js
expect_error "an unknown file is 404" 404 not_found
req GET /ui/../README.md --path-as-is
check "a path with .. never reaches the file system (404)" test "$R_STATUS" = 404
# every file the page names exists in the binary
missing=
for f in $(sed -n 's/.*"\/ui\/\([^"]*\)".*/\1/p' "$CZ_SRCDIR/web/index.html") \
         $(cat "$CZ_SRCDIR"/web/*.js | sed -n "s/.*from '\.\/\([^']*\)'.*/\1/p" | sort -u); do
  req GET "/ui/$f"
  [ "$R_STATUS" = 200 ] || missing="$missing $f"
done
is "every file index.html and the modules import is served" "${missing:-none}" none

# ---- a second daemon that requires API tokens (when this build has them) ----
ADATA=$(mktemp -d "$T_TMP/adata.XXXXXX")
AUTH_URL=
TOKEN=
if TOKEN=$("$CZ_BIN" token create --name dashboard-test --data-dir "$ADATA" 2>/dev/null) && [ -n "$TOKEN" ]; then
  MAIN_PID=$CZ_PID MAIN_URL=$CZ_URL
  if cz_start "$ADATA" --workers 1 --auth on; then
    AUTH_URL=$CZ_URL AUTH_PID=$CZ_PID
    req GET /v1/jobs
    is "the token daemon refuses an anonymous API call (401)" "$R_STATUS" 401
    req GET /
    is "... but serves the dashboard page without a token" "$R_STATUS" 200
  else
    not_ok "a daemon with --auth on starts"
  fi
  CZ_PID=$MAIN_PID CZ_URL=$MAIN_URL
fi

# ---- the browser walk ----
SHOTS=$CZ_BUILDDIR/tests/web/screenshots
rm -rf "$SHOTS"
mkdir -p "$SHOTS" "$T_TMP/profile"
CZ_URL=$CZ_URL CZ_MODEL=$CZ_DATA/tiny-llama-f16.gguf CZ_SHOTS=$SHOTS CZ_NODE_MODULES=$NPMDIR/node_modules \
  CZ_CHROMIUM=$CHROMIUM CZ_PROFILE=$T_TMP/profile HOME=$T_TMP CZ_AUTH_URL=$AUTH_URL CZ_TOKEN=$TOKEN \
  timeout 300 node "$CZ_SRCDIR/tests/web/dashboard.mjs" >"$T_TMP/walk.out" 2>"$T_TMP/walk.err"
rc=$?
n_lines=0
while IFS= read -r line; do
  case $line in
    "ok - "*) ok "${line#ok - }"; n_lines=$((n_lines + 1)) ;;
    "not ok - "*) not_ok "${line#not ok - }"; n_lines=$((n_lines + 1)) ;;
    "#"*) echo "$line" ;;
    *) diag "$line" ;;
  esac
done <"$T_TMP/walk.out"
if [ "$rc" -ne 0 ] && [ "$n_lines" -eq 0 ] || [ "$rc" -gt 1 ]; then
  not_ok "the browser walk ran (exit $rc)"
  diag "$(tail -30 "$T_TMP/walk.err")"
fi
n_shots=$(ls "$SHOTS"/*.png 2>/dev/null | grep -vc failure)
check "a screenshot of each view ($n_shots in $SHOTS)" test "$n_shots" -ge 10

if [ -n "$AUTH_URL" ]; then
  cz_stop "$AUTH_PID"
  is "the token daemon stops cleanly" "$CZ_EXIT" 0
fi
cz_stop
is "the daemon stops cleanly" "$CZ_EXIT" 0
t_done
