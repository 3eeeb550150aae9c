#!/usr/bin/env bash
# load-bench.sh: requests per second and p99 latency of GET /v1/jobs/{id} at 64 connections,
# side by side in the same run with nginx serving a static file of the same byte size; then
# upload and download throughput of big files on loopback with the daemon's peak RSS.
#
# usage: bench/load-bench.sh [COMPRESSD] [--duration S] [--sizes "256M 1G"] [--no-files]
#   COMPRESSD      the binary to measure (default: build/release/compressd of this tree; build
#                  it without sanitizers, the script builds nothing)
#   --duration S   seconds of wrk per run (default 10); each side runs twice, alternating
#   --sizes LIST   file sizes for the upload/download part (default "256M 1G"; K, M, G are
#                  powers of 1024)
#   --no-files     only the request-rate part
#   --daemon-args "ARGS"  extra options for compressd serve (e.g. "--max-header-bytes 32K")
# Needs wrk and nginx (Debian packages wrk, nginx; bench-only, not test dependencies). nginx
# runs as a foreground instance with its own configuration in a temporary directory on
# 127.0.0.1, never the system service. Both servers get 4 threads/workers (compressd's
# HTTP_THREADS); wrk runs 2 threads, 64 connections, on the same 2 cores.
# Upload/download: a fresh daemon per size, so that VmHWM (peak RSS, from /proc/PID/status)
# belongs to that size alone; the file is a valid safetensors file (one F32 tensor, sparse, so
# it takes no time to make), sent with curl -T (streamed, not loaded into curl's memory) and
# fetched back from GET /v1/models/{id}/file, its sha256 checked.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=$SRC/build/release/compressd
DUR=10
SIZES="256M 1G"
FILES=yes
DARGS=
while [ $# -gt 0 ]; do
  case $1 in
    --duration) DUR=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --no-files) FILES=no; shift ;;
    --daemon-args) DARGS=$2; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) BIN=$1; shift ;;
  esac
done
for t in wrk nginx curl jq python3; do
  command -v "$t" >/dev/null || { echo "load-bench: $t not found (apt-get install $t)" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "load-bench: no compressd at $BIN" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cz-load.XXXXXX")
PIDS=()
NGINX_PID=
cleanup() {
  # QUIT lets nginx's master stop its workers (KILL would orphan them)
  [ -n "$NGINX_PID" ] && { kill -QUIT "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; }
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# start_daemon DATA_DIR: sets DPID and URL
start_daemon() {
  # shellcheck disable=SC2086 # DARGS is a list of options
  "$BIN" serve --listen 127.0.0.1:0 --data-dir "$1" --workers 1 --log-level warn $DARGS \
    >"$TMP/d.out" 2>"$TMP/d.log" &
  DPID=$!
  PIDS+=("$DPID")
  local port=
  for _ in $(seq 100); do
    port=$(sed -n 's|^compressd .* listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$TMP/d.out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$TMP/d.out" "$TMP/d.log" >&2; exit 1; }
  URL=http://127.0.0.1:$port
}
stop_daemon() { kill -TERM "$DPID"; wait "$DPID" || true; }

# st_zero OUT BYTES: a safetensors file of one F32 tensor of zeros, about BYTES long (sparse)
st_zero() {
  python3 - "$1" "$2" <<'EOF'
import json, struct, sys
out, n = sys.argv[1], int(sys.argv[2]) // 4
h = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
h += b" " * (-len(h) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    f.truncate(8 + len(h) + 4 * n)
EOF
}
bytes_of() {
  local v=${1%[KMG]} u=${1##*[0-9]}
  case $u in K) echo $((v << 10)) ;; M) echo $((v << 20)) ;; G) echo $((v << 30)) ;; *) echo "$1" ;; esac
}

# CPU time (clock ticks, user + system) of the processes given
cpu_ticks() {
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}

# wrk_run URL PID...: prints "RPS P99_MS CPU_US_PER_REQUEST" (CPU of the server PIDs: on shared
# cores requests/s moves with the neighbours' load, CPU time per request much less)
wrk_run() {
  local url=$1
  shift
  local c0 c1
  c0=$(cpu_ticks "$@")
  wrk -t2 -c64 -d"${DUR}s" --latency "$url" >"$TMP/wrk.out"
  c1=$(cpu_ticks "$@")
  local rps p99 req
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$TMP/wrk.out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}' "$TMP/wrk.out")
  req=$(awk '/requests in/ {print $1}' "$TMP/wrk.out")
  if grep -q 'Non-2xx\|Socket errors' "$TMP/wrk.out"; then grep 'Non-2xx\|Socket errors' "$TMP/wrk.out" >&2; fi
  echo "$rps $p99 $(awk -v c=$((c1 - c0)) -v q="$req" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", c * 1e6 / hz / q}')"
}

echo "compressd: $BIN ($("$BIN" --version 2>/dev/null | head -1))${DARGS:+ with $DARGS}"
echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'), wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- GET /v1/jobs/{id} against nginx ----
start_daemon "$TMP/data"
st_zero "$TMP/small.safetensors" 65536
MODEL=$(curl -sf -H 'Content-Type: application/octet-stream' --data-binary "@$TMP/small.safetensors" \
  "$URL/v1/models?name=small" | jq -r .id)
JOB=$(curl -sf -H 'Content-Type: application/json' \
  --data-binary '{"model": "'"$MODEL"'", "steps": [{"op": "quantize", "type": "q8_0"}], "output": {"format": "gguf"}}' \
  "$URL/v1/jobs" | jq -r .id)
for _ in $(seq 100); do
  [ "$(curl -sf "$URL/v1/jobs/$JOB" | jq -r .state)" = succeeded ] && break
  sleep 0.1
done
mkdir -p "$TMP/www" "$TMP/nginx"
curl -sf -o "$TMP/www/job.json" "$URL/v1/jobs/$JOB"
# started as root, nginx's workers run as nobody: they must be able to read the file
chmod 0755 "$TMP" "$TMP/www"
chmod 0644 "$TMP/www/job.json"
SIZE=$(stat -c %s "$TMP/www/job.json")
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 4;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  types { application/json json; }
  server {
    listen 127.0.0.1:0;
    root $TMP/www;
  }
}
EOF
# nginx cannot listen on port 0 and report it: pick a free port first
NPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -i "s/listen 127.0.0.1:0;/listen 127.0.0.1:$NPORT;/" "$TMP/nginx/nginx.conf"
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$NPORT/job.json" && break; sleep 0.1; done
cmp -s "$TMP/www/job.json" <(curl -sf "http://127.0.0.1:$NPORT/job.json") ||
  { echo "nginx does not serve the file" >&2; exit 1; }

echo
echo "GET of $SIZE bytes, wrk -t2 -c64 -d${DUR}s, two alternating runs each:"
NGINX_WORKERS=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
printf '%-34s %12s %10s %14s\n' server "requests/s" "p99 ms" "CPU us/req"
sum_c=0 sum_n=0
for run in 1 2; do
  read -r rps p99 cpr < <(wrk_run "$URL/v1/jobs/$JOB" "$DPID")
  printf '%-34s %12s %10s %14s\n' "compressd GET /v1/jobs/{id} #$run" "$rps" "$p99" "$cpr"
  sum_c=$(awk -v a="$sum_c" -v b="$rps" 'BEGIN {print a + b}')
  # shellcheck disable=SC2086 # one argument per worker pid
  read -r rps p99 cpr < <(wrk_run "http://127.0.0.1:$NPORT/job.json" "$NGINX_PID" $NGINX_WORKERS)
  printf '%-34s %12s %10s %14s\n' "nginx static file #$run" "$rps" "$p99" "$cpr"
  sum_n=$(awk -v a="$sum_n" -v b="$rps" 'BEGIN {print a + b}')
done
awk -v c="$sum_c" -v n="$sum_n" 'BEGIN {printf "compressd / nginx requests/s: %.2f (target >= 0.5)\n", c / n}'
stop_daemon

# ---- upload and download of big files, peak RSS per size ----
[ "$FILES" = yes ] || exit 0
echo
printf '%-8s %14s %16s %12s\n' size "upload MB/s" "download MB/s" "VmHWM MiB"
for s in $SIZES; do
  n=$(bytes_of "$s")
  st_zero "$TMP/big.safetensors" "$n"
  rm -rf "$TMP/bdata"
  start_daemon "$TMP/bdata"
  up=$(curl -sf -T "$TMP/big.safetensors" -X POST -H 'Content-Type: application/octet-stream' \
    -o "$TMP/up.json" -w '%{speed_upload}' "$URL/v1/models?name=big")
  id=$(jq -r .id "$TMP/up.json")
  down=$(curl -sf -o "$TMP/down.bin" -w '%{speed_download}' "$URL/v1/models/$id/file")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$DPID/status")
  stop_daemon
  [ "$(sha256sum <"$TMP/down.bin" | cut -d' ' -f1)" = "$(jq -r .sha256 "$TMP/up.json")" ] ||
    { echo "download of $s does not match the upload's sha256" >&2; exit 1; }
  rm -f "$TMP/down.bin" "$TMP/big.safetensors"
  rm -rf "$TMP/bdata"
  awk -v s="$s" -v u="$up" -v d="$down" -v h="$hwm" \
    'BEGIN {printf "%-8s %14.0f %16.0f %12.1f\n", s, u / 1e6, d / 1e6, h / 1024}'
done
