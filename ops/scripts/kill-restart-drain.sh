#!/usr/bin/env bash
# kill -9 a nexus-server while deliveries are in flight, restart it on the same data directory,
# and time how long the retry queue takes to empty after the restart (API.md section 5: what was
# in flight is due again at once, it does not wait out its lease).
#
# usage: ops/scripts/kill-restart-drain.sh [path/to/nexus-server]   (default target/release/nexus-server)
# Needs python3 and curl. Uses 127.0.0.1:39123 (server) and :39124 (a receiver answering 204
# after 0.5 s, so a few hundred deliveries are in flight at the kill).
set -euo pipefail
BIN=${1:-target/release/nexus-server}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
export NEXUS_SECRET=drain-test-secret-drain-test-0001 NEXUS_ADMIN_TOKEN=drain-test-admin-drain-test-0001
export PORT=39123 DATA_DIR="$WORK/data" LOG_LEVEL=warn NEXUS_ENV=development
ADMIN="Authorization: Bearer $NEXUS_ADMIN_TOKEN"
URL=http://127.0.0.1:39123

python3 - 39124 0.5 <<'PY' &
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(float(sys.argv[2]))
        self.send_response(204); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
    def handle(self):
        try: super().handle()
        except ConnectionError: pass  # the server was killed mid-request
http.server.ThreadingHTTPServer.request_queue_size = 1024
http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY

wait_up() { for _ in $(seq 1 100); do curl -sf "$URL/health" >/dev/null && return 0; sleep 0.1; done; echo "server did not start" >&2; exit 1; }
stats() { curl -s -H "$ADMIN" "$URL/api/retry/stats"; }

"$BIN" >"$WORK/first.log" 2>&1 &
SERVER=$!
wait_up
curl -sf -XPOST -H "$ADMIN" -H 'content-type: application/json' "$URL/api/subscriptions" \
    -d '{"url":"http://127.0.0.1:39124/hook","events":["*"]}' >/dev/null
python3 - "$URL" "$NEXUS_SECRET" <<'PY'
import hashlib, hmac, json, sys, time, urllib.request
url, secret = sys.argv[1], sys.argv[2].encode()
for b in range(10):
    body = json.dumps({"events": [{"type": "PAYMENT_RECEIVED", "payload": {"n": b * 100 + i}} for i in range(100)]}).encode()
    ts = str(int(time.time()))
    sig = "sha256=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(url + "/events/batch", body, {"content-type": "application/json",
        "x-nexus-node": "flowpay", "x-nexus-timestamp": ts, "x-nexus-signature": sig})
    urllib.request.urlopen(req).read()
PY
sleep 1
echo "at the kill: $(stats)"
kill -9 "$SERVER"; wait "$SERVER" 2>/dev/null || true
start=$(date +%s.%N)
"$BIN" >"$WORK/second.log" 2>&1 &
wait_up
while :; do
    s=$(stats)
    if grep -q '"pending":0[,}]' <<<"$s" && grep -q '"inFlight":0[,}]' <<<"$s"; then break; fi
    if python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $start > 600 else 1)"; then
        echo "not drained after 600 s: $s" >&2; exit 1
    fi
    sleep 0.1
done
echo "drained $(python3 -c "print(round($(date +%s.%N) - $start, 2))") s after the restart: $s"
