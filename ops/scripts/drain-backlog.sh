#!/usr/bin/env bash
# A backlog of deliveries drained to a bare `return 204` nginx, measured from outside (issue 17's
# second and third rows).
#
# usage: ops/scripts/drain-backlog.sh [SUBSCRIPTIONS...]   (default: 1 10)
#
# For each count of subscriptions: a fresh nexus-server on SQLite (synchronous=FULL), that many
# subscriptions to one nginx answering 204, each disabled (API.md section 4: a disabled
# subscription's deliveries wait in the queue), EVENTS events published in signed batches of
# 1000, then every subscription enabled at once and `GET /api/retry/stats` polled until nothing is
# pending or in flight. Reports deliveries per second from the enabling to the empty queue, the
# server's CPU per delivery (utime + stime from /proc), and nginx's count of requests as the
# receiver saw them (each delivery at least once; more means retries).
# Needs nginx, curl, openssl, python3. EVENTS defaults to 100000 (per subscription count, so 10
# subscriptions drain 10 times as many deliveries). BIN defaults to target/release/nexus-server.
# CALLGRIND=1 runs the server under `valgrind --tool=callgrind` (instructions counted, not time:
# repeatable on a noisy machine) with the counts zeroed when the subscriptions are enabled and
# written when the queue is empty, to callgrind.drain.<pid>.out.1 in the current directory (use a
# small EVENTS: the server runs some 50 times slower).
set -euo pipefail
BIN=${BIN:-target/release/nexus-server}
EVENTS=${EVENTS:-100000}
COUNTS=("$@")
[ ${#COUNTS[@]} -eq 0 ] && COUNTS=(1 10)
for tool in nginx curl openssl python3; do
    command -v "$tool" >/dev/null || { echo "drain-backlog: $tool is missing" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "drain-backlog: no server binary at $BIN" >&2; exit 1; }
[ $((EVENTS % 1000)) -eq 0 ] || { echo "drain-backlog: EVENTS must be a multiple of 1000" >&2; exit 2; }

WORK=$(mktemp -d)
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export NEXUS_SECRET=drain-backlog-secret-drain-backlog-01 NEXUS_ADMIN_TOKEN=drain-backlog-admin-drain-backlog-1
export LOG_LEVEL=warn NEXUS_ENV=development RATE_LIMIT_MAX_REQUESTS=100000000
ADMIN=(-H "authorization: Bearer $NEXUS_ADMIN_TOKEN" -H "content-type: application/json")

# The receiver: nginx answering 204, counting requests with stub_status.
NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /status { stub_status; }
        location / { return 204; }
    }
}
EOF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && break
    sleep 0.05
done
# Requests nginx has answered so far (stub_status counts its own request too).
served() { curl -s "http://127.0.0.1:$NGINX_PORT/status" | awk 'NR==3 {print $3}'; }

# One batch of 1000 events without ids (every post makes 1000 new events), signed once.
python3 - >"$WORK/batch.json" <<'PY'
import json
events = [{"type": "PAYMENT_RECEIVED", "payload": {"order": f"o-{i}", "amount": 25, "currency": "EUR"}} for i in range(1000)]
print(json.dumps({"events": events}, separators=(",", ":")), end="")
PY

cpu() { awk '{print ($14 + $15)}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)

echo "drain of $EVENTS events per subscription to nginx 204 (keep-alive); $(nproc) CPUs, $(uname -r)"
RUN=()
if [ -n "${CALLGRIND:-}" ]; then
    command -v callgrind_control >/dev/null || { echo "drain-backlog: valgrind is missing" >&2; exit 1; }
    RUN=(valgrind --tool=callgrind "--callgrind-out-file=$PWD/callgrind.drain.%p.out")
fi
for n in "${COUNTS[@]}"; do
    env PORT=0 DATA_DIR="$WORK/data-$n" "${RUN[@]}" "$BIN" >"$WORK/server-$n.out" 2>"$WORK/server-$n.err" &
    pid=$!
    url=""
    for _ in $(seq 1 600); do
        url=$(grep -o 'http://[0-9.:]*' "$WORK/server-$n.out" | head -n 1 || true)
        [ -n "$url" ] && curl -sf "$url/health/ready" >/dev/null && break
        sleep 0.05
    done
    [ -n "$url" ] || { echo "drain-backlog: the server did not start: $(cat "$WORK/server-$n.err")" >&2; exit 1; }
    ids=()
    for i in $(seq 1 "$n"); do
        id=$(curl -sf "${ADMIN[@]}" -X POST "$url/api/subscriptions" \
            -d "{\"url\":\"http://127.0.0.1:$NGINX_PORT/hook/$i\",\"events\":[\"PAYMENT_RECEIVED\"]}" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')
        curl -sf "${ADMIN[@]}" -X PATCH "$url/api/subscriptions/$id" -d '{"enabled":false}' >/dev/null
        ids+=("$id")
    done
    ts=$(date +%s)
    sig=$( (printf '%s.' "$ts"; cat "$WORK/batch.json") | openssl dgst -sha256 -hmac "$NEXUS_SECRET" -r | cut -d' ' -f1)
    for _ in $(seq 1 $((EVENTS / 1000))); do
        curl -sf -o /dev/null -X POST "$url/events/batch" -H "content-type: application/json" \
            -H "x-nexus-node: flowpay" -H "x-nexus-timestamp: $ts" -H "x-nexus-signature: sha256=$sig" \
            --data-binary "@$WORK/batch.json"
    done
    pending=$(curl -sf "${ADMIN[@]}" "$url/api/retry/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["pending"])')
    [ "$pending" -eq $((EVENTS * n)) ] || { echo "drain-backlog: $pending pending, expected $((EVENTS * n))" >&2; exit 1; }
    [ -n "${CALLGRIND:-}" ] && callgrind_control --zero "$pid" >/dev/null 2>&1
    before_served=$(served)
    before_cpu=$(cpu "$pid")
    start=$(date +%s.%N)
    for id in "${ids[@]}"; do
        curl -sf "${ADMIN[@]}" -X PATCH "$url/api/subscriptions/$id" -d '{"enabled":true}' >/dev/null
    done
    # Watch the receiver, not the server: one process reads nginx's request count every 20 ms
    # until every delivery has arrived, then the queue's stats until the last acks are in. (The
    # stats count the whole queue, and a curl + python3 per poll cost a good part of a core:
    # polling them through the drain slowed the drain it measured.)
    read -r left polls < <(python3 - "http://127.0.0.1:$NGINX_PORT/status" "$url/api/retry/stats" \
        "$NEXUS_ADMIN_TOKEN" "$before_served" $((EVENTS * n)) <<'PY'
import json, sys, time, urllib.request
status, stats, token, before, total = sys.argv[1:]
before, total = int(before), int(total)
deadline = time.monotonic() + 600  # 10 minutes at most
polls = 0
while time.monotonic() < deadline:
    polls += 1  # stub_status counts its own request
    served = int(urllib.request.urlopen(status).read().split(b"\n")[2].split()[2])
    if served - before - polls >= total:
        break
    time.sleep(0.02)
left = -1
request = urllib.request.Request(stats, headers={"authorization": f"Bearer {token}"})
while time.monotonic() < deadline:
    data = json.load(urllib.request.urlopen(request))["data"]
    left = data["pending"] + data["inFlight"]
    if left == 0:
        break
    time.sleep(0.005)
print(left, polls)
PY
)
    end=$(date +%s.%N)
    after_cpu=$(cpu "$pid")
    [ -n "${CALLGRIND:-}" ] && callgrind_control --dump "$pid" >/dev/null 2>&1
    received=$(($(served) - before_served - polls - 1))
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    [ "$left" -eq 0 ] || { echo "drain-backlog: $left deliveries still queued after 10 minutes" >&2; exit 1; }
    python3 - "$n" "$EVENTS" "$start" "$end" "$before_cpu" "$after_cpu" "$tick" "$received" <<'PY'
import sys
n, events, start, end, c0, c1, tick, received = sys.argv[1:]
n, events, received = int(n), int(events), int(received)
total = n * events
secs = float(end) - float(start)
cpu = (float(c1) - float(c0)) / float(tick)
print(f"{n:>3} subscription(s): {total} deliveries in {secs:.2f} s = {total / secs:,.0f} deliveries/s, "
      f"{cpu / total * 1e6:.1f} µs server CPU/delivery, receiver saw {received} requests")
PY
done
