#!/usr/bin/env bash
# Schema-driven API testing (issue 18): Schemathesis against the live server's /openapi.json,
# with the admin token and the ingress signature (hooks.py) wired in. It must find no 5xx, no
# response that breaks its own schema and no crash.
#
#   tests/schemathesis/run.sh [path/to/nexus-server] [max examples per operation]
#
# Needs `schemathesis` on PATH (pip install schemathesis==4.32.5; .ci/run installs it in a venv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
server_bin="${1:-target/debug/nexus-server}"
max_examples="${2:-25}"

work="$(mktemp -d)"
port_file="$work/port"
cleanup() {
    if [[ -n "${server_pid:-}" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A free port on loopback, chosen by the kernel.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="schemathesis-admin-token-0123456789abcdef"
export NEXUS_SECRET="whsec_$(python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())')"

HOST=127.0.0.1 PORT="$port" DATA_DIR="$work/data" NEXUS_ENV=test NEXUS_ADMIN_TOKEN="$token" \
    NEXUS_ALLOW_PRIVATE_TARGETS=true RATE_LIMIT_MAX_REQUESTS=0 LOG_LEVEL=warn \
    "$server_bin" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then cat "$work/server.log" >&2; echo "server exited" >&2; exit 1; fi
    sleep 0.1
done

status=0
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=hooks \
    schemathesis --config-file "$here/schemathesis.toml" run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --max-examples "$max_examples" \
    --exclude-path /ws \
    --seed 18 \
    --output-sanitize false \
    --request-timeout 10 "${@:3}" || status=$?

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "nexus-server died during the run" >&2
    cat "$work/server.log" >&2
    exit 1
fi
if grep -q "panicked" "$work/server.log"; then
    echo "nexus-server panicked during the run:" >&2
    grep -A5 "panicked" "$work/server.log" >&2
    exit 1
fi
exit "$status"
