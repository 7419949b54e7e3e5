#!/usr/bin/env bash
# Instructions per acknowledged publish, counted by callgrind: repeatable on a noisy machine where
# requests/s and CPU seconds move by 10 % from one run to the next (issue 17).
#
# usage: ops/scripts/callgrind-publish.sh [SECONDS]   (default 20)
#
# Runs nexus-server (BIN, default target/release/nexus-server; SQLite, synchronous=FULL) under
# `valgrind --tool=callgrind` with its instrumentation off through start-up and a 3 s warm-up, on
# for SECONDS of `wrk -t1 -c16` posting the pre-signed single event of wrk-publish.sh, then off
# again. Prints the requests wrk counted while it was on, the instructions counted and their
# quotient, and leaves the profile in callgrind.publish.<pid>.out (read it with
# `callgrind_annotate --inclusive=yes`). The server's user-space instructions only: the kernel's
# part of each request (the system calls) is not counted.
# Needs valgrind, wrk, curl, openssl, python3.
set -euo pipefail
BIN=${BIN:-target/release/nexus-server}
SECONDS_ON=${1:-20}
for tool in valgrind callgrind_control callgrind_annotate wrk curl openssl python3; do
    command -v "$tool" >/dev/null || { echo "callgrind-publish: $tool is missing" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "callgrind-publish: no server binary at $BIN" >&2; exit 1; }

WORK=$(mktemp -d)
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export NEXUS_SECRET=wrk-publish-secret-wrk-publish-0001 NEXUS_ADMIN_TOKEN=wrk-publish-admin-wrk-publish-01
export LOG_LEVEL=warn NEXUS_ENV=development RATE_LIMIT_MAX_REQUESTS=100000000

BODY='{"type":"PAYMENT_RECEIVED","payload":{"order":"o-1","amount":25,"currency":"EUR"}}'
TS=$(date +%s)
SIG=$(printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$NEXUS_SECRET" -r | cut -d' ' -f1)
cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["content-type"] = "application/json"
wrk.headers["x-nexus-node"] = "flowpay"
wrk.headers["x-nexus-timestamp"] = "$TS"
wrk.headers["x-nexus-signature"] = "sha256=$SIG"
EOF

env PORT=0 DATA_DIR="$WORK/data" valgrind --tool=callgrind --instr-atstart=no \
    "--callgrind-out-file=$PWD/callgrind.publish.%p.out" "$BIN" >"$WORK/server.out" 2>"$WORK/server.err" &
pid=$!
url=""
for _ in $(seq 1 600); do
    url=$(grep -o 'http://[0-9.:]*' "$WORK/server.out" | head -n 1 || true)
    [ -n "$url" ] && curl -sf "$url/health/ready" >/dev/null && break
    sleep 0.1
done
[ -n "$url" ] || { echo "callgrind-publish: the server did not start: $(cat "$WORK/server.err")" >&2; exit 1; }
wrk -t1 -c8 -d3s -s "$WORK/post.lua" "$url/events" >/dev/null
callgrind_control --instr=on "$pid" >/dev/null 2>&1
wrk -t1 -c16 -d"${SECONDS_ON}s" -s "$WORK/post.lua" "$url/events" >"$WORK/wrk.txt"
callgrind_control --instr=off "$pid" >/dev/null 2>&1
kill -INT "$pid"
wait "$pid" 2>/dev/null || true
python3 - "$WORK/wrk.txt" "$PWD/callgrind.publish.$pid.out" <<'PY'
import re, subprocess, sys
text = open(sys.argv[1]).read()
requests = int(re.search(r"(\d+) requests in", text).group(1))
if "Non-2xx" in text:
    sys.exit(f"callgrind-publish: some requests failed:\n{text}")
totals = subprocess.run(["callgrind_annotate", sys.argv[2]], capture_output=True, text=True).stdout
instructions = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", totals).group(1).replace(",", ""))
print(f"{requests} publishes, {instructions:,} instructions: {instructions / requests:,.0f} per publish ({sys.argv[2]})")
PY
