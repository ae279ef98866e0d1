#!/usr/bin/env bash
# A throwaway Qdrant server for the tests: free loopback ports, a temporary
# storage directory, stopped (and its directory removed) when the caller exits.
#
#   scripts/qdrant-test-server.sh CMD [ARGS...]
#       starts the server, runs CMD with RAGCHAT_TEST_QDRANT_URL set to its
#       gRPC URL, stops the server and exits with CMD's status, e.g.
#       scripts/qdrant-test-server.sh cargo test --release --locked --lib index::server
#   source scripts/qdrant-test-server.sh; qdrant_test_server_start
#       (what scripts/test.sh does) starts it and exports
#       RAGCHAT_TEST_QDRANT_URL and QDRANT_TEST_HTTP_URL; it is stopped when
#       the sourcing shell exits (an EXIT trap; call qdrant_test_server_stop
#       from your own trap if you set one afterwards).
#
# The server binary (Qdrant v1.18.3, see ../shared/bin/README.md) is the
# first of: $RAGCHAT_QDRANT_SERVER, <repo>/../shared/bin/qdrant-server,
# /work/shared/bin/qdrant-server. Nothing of it is needed at run time, only
# by the tests.

_qdrant_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

qdrant_test_server_binary() {
    local candidate
    for candidate in "${RAGCHAT_QDRANT_SERVER:-}" "$_qdrant_repo/../shared/bin/qdrant-server" \
        /work/shared/bin/qdrant-server; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    echo "qdrant-test-server: no Qdrant server binary: set RAGCHAT_QDRANT_SERVER, or install" >&2
    echo "  it as $_qdrant_repo/../shared/bin/qdrant-server (or /work/shared/bin/qdrant-server)" >&2
    return 1
}

# Two distinct free loopback ports (bound and released at once, so another
# process could take one in between; the readiness wait below would notice).
_qdrant_free_ports() {
    python3 - <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

qdrant_test_server_stop() {
    if [[ -n "${_qdrant_pid:-}" ]]; then
        kill "$_qdrant_pid" 2>/dev/null || true
        wait "$_qdrant_pid" 2>/dev/null || true
        _qdrant_pid=""
    fi
    if [[ -n "${_qdrant_dir:-}" ]]; then
        rm -rf "$_qdrant_dir"
        _qdrant_dir=""
    fi
}

qdrant_test_server_start() {
    local bin ports http grpc i
    bin="$(qdrant_test_server_binary)" || return 1
    ports="$(_qdrant_free_ports)" || return 1
    http="${ports%% *}"
    grpc="${ports##* }"
    _qdrant_dir="$(mktemp -d "${TMPDIR:-/tmp}/ragchat-qdrant.XXXXXX")"
    "$bin" "$_qdrant_dir" "$http" "$grpc" >"$_qdrant_dir/server.log" 2>&1 &
    _qdrant_pid=$!
    trap qdrant_test_server_stop EXIT
    # The first start also unpacks the binary (about 100 MB).
    for i in $(seq 600); do
        if curl -sf "http://127.0.0.1:$http/readyz" >/dev/null 2>&1; then
            export RAGCHAT_TEST_QDRANT_URL="http://127.0.0.1:$grpc"
            export QDRANT_TEST_HTTP_URL="http://127.0.0.1:$http"
            echo "qdrant-test-server: Qdrant on $RAGCHAT_TEST_QDRANT_URL (gRPC), $QDRANT_TEST_HTTP_URL (HTTP), pid $_qdrant_pid"
            return 0
        fi
        if ! kill -0 "$_qdrant_pid" 2>/dev/null; then
            echo "qdrant-test-server: the server exited while starting; its log:" >&2
            cat "$_qdrant_dir/server.log" >&2
            _qdrant_pid=""
            qdrant_test_server_stop
            return 1
        fi
        sleep 0.2
    done
    echo "qdrant-test-server: not ready after 120 s on port $http; its log:" >&2
    cat "$_qdrant_dir/server.log" >&2
    qdrant_test_server_stop
    return 1
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    if [[ $# -eq 0 ]]; then
        echo "usage: $0 CMD [ARGS...]   (or source it and call qdrant_test_server_start)" >&2
        exit 2
    fi
    qdrant_test_server_start
    rc=0
    "$@" || rc=$?
    qdrant_test_server_stop
    exit "$rc"
fi
