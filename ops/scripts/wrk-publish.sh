#!/usr/bin/env bash
# Acknowledged single publishes measured from outside with wrk, beside a bare `return 204` nginx
# in the same run (API.md section 2; issue 14's numbers).
#
# usage: ops/scripts/wrk-publish.sh [nginx] [hyper] [sqlite] [pg1] [pg2] [callgrind] ...
#        (default: the first five)
#   nginx   nginx answering 204 to the same request: what the machine does with HTTP alone
#   hyper   a bare hyper server answering 204 (examples/bare204.rs, on the stack nexus-server
#           serves with, without its edge): what the machine does with that HTTP stack alone
#   sqlite  one nexus-server on SQLite (synchronous=FULL)
#   pg1     one nexus-server on PostgreSQL
#   pg2     two nexus-server processes on one PostgreSQL database, each taking half the connections
#   callgrind  the sqlite case under `valgrind --tool=callgrind`, counting the server's user-space
#           instructions only while wrk runs (after a warm-up as long): instructions per publish,
#           repeatable where requests/s and CPU seconds move by 10 % between runs; the profile is
#           left in callgrind.publish.<pid>.out in the current directory (the server runs some 50
#           times slower, so latencies and requests/s of this case mean nothing)
#
# Each case posts one pre-signed single event without an id (so every request is a new, committed
# event) over CONNECTIONS connections (default 64) for DURATION seconds (default 10), then reports
# requests/s, latency percentiles, the server processes' CPU per acknowledged event (from
# /proc/<pid>/stat) and, for the stores, whether the log is gap-free (events stored = highest
# sequence).
# Needs wrk, nginx, curl, openssl, python3; the PostgreSQL cases psql and a server at
# PGURL (default postgres://postgres@127.0.0.1:5432/postgres; a database is created and dropped).
# BIN defaults to target/release/nexus-server (build it with `cargo build --release -p nexus-server`);
# BARE204 to target/release/examples/bare204 (`cargo build --release -p nexus --example bare204`).
set -euo pipefail
BIN=${BIN:-target/release/nexus-server}
BARE204=${BARE204:-target/release/examples/bare204}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432/postgres}
CASES=("$@")
[ ${#CASES[@]} -eq 0 ] && CASES=(nginx hyper sqlite pg1 pg2)
for tool in wrk curl openssl python3; do
    command -v "$tool" >/dev/null || { echo "wrk-publish: $tool is missing" >&2; exit 1; }
done
for c in "${CASES[@]}"; do
    case $c in
    hyper) [ -x "$BARE204" ] || { echo "wrk-publish: no bare204 at $BARE204 (cargo build --release -p nexus --example bare204)" >&2; exit 1; } ;;
    sqlite | pg* | callgrind) [ -x "$BIN" ] || { echo "wrk-publish: no server binary at $BIN" >&2; exit 1; } ;;
    esac
done

WORK=$(mktemp -d)
DB="wrk_$$"
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    wait 2>/dev/null || true
    psql "$PGURL" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export NEXUS_SECRET=wrk-publish-secret-wrk-publish-0001 NEXUS_ADMIN_TOKEN=wrk-publish-admin-wrk-publish-01
export PGOPTIONS="-c client_min_messages=warning"
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

# CPU seconds (user + system) of the given pids, from /proc/<pid>/stat.
cpu() {
    python3 - "$@" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        continue  # exited meanwhile
    total += int(fields[11]) + int(fields[12])
print(total / tick)
PY
}

wait_up() {
    for _ in $(seq 1 200); do curl -sf "$1/health/ready" >/dev/null && return 0; sleep 0.05; done
    echo "wrk-publish: no server at $1" >&2
    exit 1
}

# Runs wrk against every URL given at once (the connections split between them) and prints
# "requests/s p50 p99" summed and worst-of.
load() {
    local n=$# per=$((CONNECTIONS / $#)) i=0 url
    rm -f "$WORK"/wrk.*
    for url in "$@"; do
        wrk -t$((2 / n > 0 ? 2 / n : 1)) -c"$per" -d"${DURATION}s" --latency -s "$WORK/post.lua" "$url/events" \
            >"$WORK/wrk.$i" 2>&1 &
        i=$((i + 1))
    done
    wait $(jobs -p | tail -n "$n") 2>/dev/null || true
    python3 - "$WORK" "$n" <<'PY'
import re, sys
work, n = sys.argv[1], int(sys.argv[2])
rps, p50, p99, errors = 0.0, 0.0, 0.0, 0
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    if m is None:
        sys.exit(f"wrk-publish: cannot read the latency {v!r}")
    num, unit = m.groups()
    return float(num) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
for i in range(n):
    text = open(f"{work}/wrk.{i}").read()
    if "Requests/sec" not in text or "99%" not in text:
        sys.exit(f"wrk-publish: wrk gave no figures:\n{text}")
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = max(p50, ms(re.search(r"^\s*50%\s+(\S+)", text, re.M).group(1)))
    p99 = max(p99, ms(re.search(r"^\s*99%\s+(\S+)", text, re.M).group(1)))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors += int(m.group(1)) if m else 0
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {errors}")
PY
}

# The machine's busy CPU seconds (all CPUs, from /proc/stat).
machine_cpu() {
    python3 -c "
import os
f = open('/proc/stat').readline().split()[1:]
busy = sum(int(x) for x in f[:3]) + sum(int(x) for x in f[5:8])
print(busy / os.sysconf('SC_CLK_TCK'))"
}

# PIDs of the PostgreSQL server processes on this machine (none when it runs elsewhere).
pg_pids() { pgrep -x postgres || true; }

report() { # case, "rps p50 p99 errors", server cpu s, stored, highest, [postgres cpu s, machine cpu s]
    read -r rps p50 p99 errors <<<"$2"
    local per_event="" gap=""
    if [ -n "${4:-}" ]; then
        per_event=$(python3 -c "print(f'{$3 / max($4, 1) * 1e6:.0f} µs server CPU/event')")
        if [ -n "${6:-}" ]; then
            per_event+=$(python3 -c "print(f', {$6 / max($4, 1) * 1e6:.0f} µs PostgreSQL CPU/event')")
        fi
        if [ -n "${7:-}" ]; then
            per_event+=$(python3 -c "print(f', machine {$7 / ($DURATION * $(nproc)) * 100:.0f}% busy')")
        fi
        if [ "$4" = "$5" ]; then gap="gap-free ($4 stored = highest sequence)"; else gap="GAP: $4 stored, highest $5"; fi
    fi
    printf '%-7s %8s req/s  p50 %6s ms  p99 %6s ms  non-2xx %s  %s  %s\n' "$1" "$rps" "$p50" "$p99" "$errors" "$per_event" "$gap"
}

SERVERS=()
RUN=() # what the server runs under (valgrind for the callgrind case)
start_server() { # log name, extra env...; sets SERVER_PID and SERVER_URL
    local log=$1
    shift
    env PORT=0 "$@" "${RUN[@]}" "$BIN" >"$WORK/$log.out" 2>"$WORK/$log.err" &
    SERVER_PID=$!
    SERVERS+=("$SERVER_PID")
    for _ in $(seq 1 600); do
        SERVER_URL=$(grep -o 'http://[0-9.:]*' "$WORK/$log.out" | head -n 1 || true)
        [ -n "$SERVER_URL" ] && return 0
        sleep 0.05
    done
    echo "wrk-publish: $log did not start: $(cat "$WORK/$log.err")" >&2
    exit 1
}

pg_db_url() { python3 -c "import sys; u=sys.argv[1]; b,q=(u.split('?',1)+[''])[:2]; s=b.index('://')+3; a=b.find('/',s); a=len(b) if a<0 else a; print(b[:a]+'/'+sys.argv[2]+('?'+q if q else ''))" "$PGURL" "$DB"; }

echo "wrk -c$CONNECTIONS -d${DURATION}s, one pre-signed event without an id per request; $(nproc) CPUs, $(uname -r)"
for c in "${CASES[@]}"; do
    case $c in
    nginx)
        command -v nginx >/dev/null || { echo "wrk-publish: nginx is missing" >&2; exit 1; }
        # A port free now, not a fixed one: a fixed port can be held by a closed connection's
        # TIME-WAIT (an earlier run's client side), and nginx then cannot bind it.
        NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        cat >"$WORK/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK;
    server { listen 127.0.0.1:$NGINX_PORT; location / { return 204; } }
}
EOF
        nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
        for _ in $(seq 1 100); do
            curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && break
            sleep 0.05
        done
        report nginx "$(load "http://127.0.0.1:$NGINX_PORT")"
        kill %nginx 2>/dev/null || kill "$(cat "$WORK/nginx.pid")"
        ;;
    hyper)
        # Started and waited for as the server is (it answers 204 to /health/ready too).
        BIN=$BARE204 start_server bare204
        bare=$SERVER_PID url=$SERVER_URL
        wait_up "$url"
        before=$(cpu "$bare")
        result=$(load "$url")
        after=$(cpu "$bare")
        kill "$bare" 2>/dev/null || true
        wait "$bare" 2>/dev/null || true
        report hyper "$result"
        # Requests as wrk counted them ("N requests in ..."), over every wrk of the run.
        requests=$(cat "$WORK"/wrk.* | awk '/requests in/ {n += $1} END {print n + 0}')
        python3 -c "print(f'        {($after - $before) / max($requests, 1) * 1e6:.1f} µs CPU/request')"
        ;;
    sqlite)
        start_server sqlite DATA_DIR="$WORK/sqlite"
        pid=$SERVER_PID url=$SERVER_URL
        wait_up "$url"
        before=$(cpu "$pid")
        result=$(load "$url")
        after=$(cpu "$pid")
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        counts=$(python3 -c "import sqlite3; c=sqlite3.connect('$WORK/sqlite/nexus.db'); print(*c.execute('select count(*), coalesce(max(sequence),0) from events').fetchone())")
        report sqlite "$result" "$(python3 -c "print($after - $before)")" $counts
        ;;
    pg1 | pg2)
        command -v psql >/dev/null || { echo "wrk-publish: psql is missing" >&2; exit 1; }
        psql "$PGURL" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
        dburl=$(pg_db_url)
        n=${c#pg}
        pids=() urls=()
        for i in $(seq 1 "$n"); do
            start_server "pg$i" DATABASE_URL="$dburl"
            wait_up "$SERVER_URL"
            pids+=("$SERVER_PID") urls+=("$SERVER_URL")
        done
        mapfile -t pgs < <(pg_pids)
        before=$(cpu "${pids[@]}")
        pg_before=$( ((${#pgs[@]})) && cpu "${pgs[@]}" || echo 0)
        m_before=$(machine_cpu)
        result=$(load "${urls[@]}")
        after=$(cpu "${pids[@]}")
        m_after=$(machine_cpu)
        # The PostgreSQL processes that were there before the load (the pools' backends, the
        # WAL writer, the checkpointer); one that exited meanwhile is left out of both sums.
        pg_after=$( ((${#pgs[@]})) && cpu "${pgs[@]}" || echo 0)
        kill "${pids[@]}"
        wait "${pids[@]}" 2>/dev/null || true
        counts=$(psql "$dburl" -Atc "select count(*), coalesce(max(sequence),0) from events" | tr '|' ' ')
        report "$c" "$result" "$(python3 -c "print($after - $before)")" $counts \
            "$(python3 -c "print(max($pg_after - $pg_before, 0))")" "$(python3 -c "print($m_after - $m_before)")"
        psql "$PGURL" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
        ;;
    callgrind)
        for tool in valgrind callgrind_control callgrind_annotate; do
            command -v "$tool" >/dev/null || { echo "wrk-publish: $tool is missing" >&2; exit 1; }
        done
        RUN=(valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$PWD/callgrind.publish.%p.out")
        start_server callgrind DATA_DIR="$WORK/callgrind"
        RUN=()
        pid=$SERVER_PID url=$SERVER_URL
        wait_up "$url"
        load "$url" >/dev/null # the warm-up: connections open, caches filled, not counted
        callgrind_control --instr=on "$pid" >/dev/null 2>&1
        result=$(load "$url")
        callgrind_control --instr=off "$pid" >/dev/null 2>&1
        requests=$(cat "$WORK"/wrk.* | awk '/requests in/ {n += $1} END {print n + 0}')
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        python3 - "$result" "$requests" "$PWD/callgrind.publish.$pid.out" <<'PY'
import re, subprocess, sys
result, requests, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if result.split()[3] != "0":
    sys.exit(f"wrk-publish: {result.split()[3]} requests failed under callgrind")
totals = subprocess.run(["callgrind_annotate", profile], capture_output=True, text=True).stdout
instructions = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", totals).group(1).replace(",", ""))
print(f"callgrind {requests} publishes, {instructions:,} server instructions: "
      f"{instructions / max(requests, 1):,.0f} per publish ({profile})")
PY
        ;;
    *)
        echo "wrk-publish: unknown case $c (nginx, hyper, sqlite, pg1, pg2, callgrind)" >&2
        exit 2
        ;;
    esac
done
