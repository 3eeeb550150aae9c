#!/bin/sh
# test_unit: deploy/compressd.service passes `systemd-analyze verify` (and its sandboxing gets a
# low exposure score), and the daemon speaks the notify protocol the unit relies on, against a
# fake NOTIFY_SOCKET: READY=1 once it serves requests, WATCHDOG=1 at half of WATCHDOG_USEC when
# asked (and never when WATCHDOG_PID names another process), STOPPING=1 on SIGTERM, exit 0.
. "${CZ_SRCDIR:?}/tests/e2e/lib.sh"

UNIT=$CZ_SRCDIR/deploy/compressd.service

# ---- the unit file ----
if ! command -v systemd-analyze >/dev/null 2>&1; then
  skip "systemd-analyze verify deploy/compressd.service" "systemd-analyze is missing (apt-get install systemd)"
  skip "sandboxing exposure of the unit" "systemd-analyze is missing"
else
  # verify the unit as shipped, with ExecStart pointed at the binary under test (verify wants
  # an executable there) and without looking up man:compressd(8) (not installed yet); the file
  # keeps its name, which systemd checks against the unit type
  mkdir -p "$T_TMP/unit"
  sed "s#^ExecStart=/usr/bin/compressd #ExecStart=$CZ_BIN #" "$UNIT" >"$T_TMP/unit/compressd.service"
  if ! grep -q "^ExecStart=$CZ_BIN " "$T_TMP/unit/compressd.service"; then
    not_ok "the unit's ExecStart is /usr/bin/compressd serve ..."
  elif systemd-analyze verify --man=no "$T_TMP/unit/compressd.service" >"$T_TMP/verify.out" 2>&1; then
    ok "systemd-analyze verify deploy/compressd.service"
  elif grep -qiE "failed to (initialize|connect|create)|not booted|System has not been booted" "$T_TMP/verify.out"; then
    skip "systemd-analyze verify deploy/compressd.service" "systemd-analyze cannot run here: $(head -1 "$T_TMP/verify.out")"
  else
    not_ok "systemd-analyze verify deploy/compressd.service"
    diag "$(cat "$T_TMP/verify.out")"
  fi
  if systemd-analyze security --offline=yes "$T_TMP/unit/compressd.service" >"$T_TMP/sec.out" 2>&1; then
    score=$(sed -n 's/.*Overall exposure level for compressd.service: \([0-9.]*\).*/\1/p' "$T_TMP/sec.out")
    if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
      ok "sandboxing: systemd-analyze security exposure $score (at most 2.0)"
    else
      not_ok "sandboxing: systemd-analyze security exposure at most 2.0"
      diag "$(tail -5 "$T_TMP/sec.out")"
    fi
  else
    skip "sandboxing exposure of the unit" "systemd-analyze security --offline is not available"
  fi
fi
for key in Type=notify WatchdogSec= DynamicUser=yes StateDirectory=compressd ProtectSystem=strict \
           NoNewPrivileges=yes PrivateTmp=yes RestrictAddressFamilies= MemoryMax=; do
  grep -q "^#*$key" "$UNIT" || missing_keys="${missing_keys:-} $key"
done
is "the unit sets the hardening of issue 7 (MemoryMax as an example)" "${missing_keys:-none}" none

# ---- the notify protocol against a fake NOTIFY_SOCKET ----
# notify_run NAME [ENV...]: start a daemon with NOTIFY_SOCKET (and ENV), wait for it to serve,
# keep it up for a while, stop it with SIGTERM; NLOG gets the messages, one per line.
notify_run() {
  _name=$1
  shift
  NSOCK=$T_TMP/$_name.sock
  NLOG=$T_TMP/$_name.log
  : >"$NLOG"
  "$PY" "$CZ_SRCDIR/tests/deploy/notify_listen.py" "$NSOCK" "$NLOG" 30 &
  _lp=$!
  T_PIDS="$T_PIDS $_lp"
  _i=0
  while [ ! -S "$NSOCK" ] && [ $_i -lt 50 ]; do sleep 0.1; _i=$((_i + 1)); done
  DATA=$(mktemp -d "$T_TMP/data.XXXXXX")
  : >"$T_TMP/$_name.out"
  env NOTIFY_SOCKET="$NSOCK" "$@" "$CZ_BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA" \
    >"$T_TMP/$_name.out" 2>"$T_TMP/$_name.err" &
  CZ_PID=$!
  T_PIDS="$T_PIDS $CZ_PID"
  CZ_PORT=
  _i=0
  while [ -z "$CZ_PORT" ] && [ $_i -lt 100 ] && kill -0 "$CZ_PID" 2>/dev/null; do
    CZ_PORT=$(sed -n 's|^compressd .* listening on http://127\.0\.0\.1:\([0-9][0-9]*\)/.*|\1|p' "$T_TMP/$_name.out")
    sleep 0.1
    _i=$((_i + 1))
  done
  CZ_URL=http://127.0.0.1:$CZ_PORT
  READY_AT=
  _i=0
  while [ $_i -lt 100 ]; do
    grep -q ' READY=1$' "$NLOG" && break
    sleep 0.05
    _i=$((_i + 1))
  done
  R_READYZ=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$CZ_URL/readyz")
  sleep "${HOLD:-1}"
  cz_stop "$CZ_PID" TERM 20
  sleep 0.3
  kill "$_lp" 2>/dev/null
  wait "$_lp" 2>/dev/null
}
count() { grep -c " $1\$" "$NLOG"; }

# 1. no watchdog asked for: READY=1, then STOPPING=1 at SIGTERM, no WATCHDOG=1
notify_run plain env -u WATCHDOG_USEC -u WATCHDOG_PID
is "READY=1 is sent once" "$(count READY=1)" 1
is "/readyz answers 200 once READY=1 was sent" "$R_READYZ" 200
is "STOPPING=1 is sent once on SIGTERM" "$(count STOPPING=1)" 1
order=$(awk '{print $2}' "$NLOG" | grep -v LISTENING | tr '\n' ' ')
is "READY=1 comes before STOPPING=1" "$order" "READY=1 STOPPING=1 "
is "no WATCHDOG=1 without WATCHDOG_USEC" "$(count WATCHDOG=1)" 0
is "the daemon exits 0 after SIGTERM" "$CZ_EXIT" 0

# 2. WATCHDOG_USEC=400000 (0.4 s): a ping every 0.2 s while it runs, from the event loop
HOLD=2 notify_run wd env -u WATCHDOG_PID WATCHDOG_USEC=400000
n=$(count WATCHDOG=1)
if [ "$n" -ge 7 ] && [ "$n" -le 16 ]; then
  ok "WATCHDOG=1 about every 0.2 s with WATCHDOG_USEC=400000 ($n in ~2.3 s)"
else
  not_ok "WATCHDOG=1 about every 0.2 s with WATCHDOG_USEC=400000 (got $n in ~2.3 s)"
  diag "$(cat "$NLOG")"
fi
# the largest gap between pings stays below the interval
gap=$(awk '$2 == "WATCHDOG=1" { if (p) { g = $1 - p; if (g > m) m = g } p = $1 } END { print m + 0 }' "$NLOG")
check "no gap between two pings reaches WATCHDOG_USEC (largest ${gap} ms < 400)" test "$gap" -lt 400
first=$(awk '$2 == "READY=1" { print NR; exit }' "$NLOG")
firstwd=$(awk '$2 == "WATCHDOG=1" { print NR; exit }' "$NLOG")
check "the first WATCHDOG=1 follows READY=1" test "${firstwd:-0}" -gt "${first:-99}"
is "STOPPING=1 on SIGTERM with the watchdog on" "$(count STOPPING=1)" 1
is "exit 0 with the watchdog on" "$CZ_EXIT" 0

# 3. WATCHDOG_PID names another process: the pings are not for us
notify_run otherpid env WATCHDOG_USEC=200000 WATCHDOG_PID=1
is "no WATCHDOG=1 when WATCHDOG_PID is another process" "$(count WATCHDOG=1)" 0
is "READY=1 still sent when WATCHDOG_PID is another process" "$(count READY=1)" 1

t_done
