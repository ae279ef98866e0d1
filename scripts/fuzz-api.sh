#!/usr/bin/env bash
# Fuzz the HTTP API with Schemathesis against its own OpenAPI document.
#
#   scripts/fuzz-api.sh [extra schemathesis arguments]
#
# Starts the release server on a random port over a fresh data directory
# (the sample corpus ingested as the public collection `docs`, one admin and
# one user, rate limits off), then runs Schemathesis against
# /api/openapi.json twice: signed in as the user, then as the admin. Each
# response is checked: no 5xx, status code and content type documented, body
# matching its schema. Prints the counts of each run, stops the server (its
# whole process group) and exits non-zero when a run found failures.
#
#   FUZZ_MAX_EXAMPLES=N (default 50)  test cases per operation and phase
#   FUZZ_SEED=N                       reproduce a run
#   FUZZ_SKIP_BUILD=1                 use the binary already built
#   FUZZ_KEEP=1                       keep the data directory and the reports
#
# Schemathesis is installed from PyPI into $FUZZ_VENV
# (default ~/.cache/ragchat-schemathesis) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"
venv="${FUZZ_VENV:-$HOME/.cache/ragchat-schemathesis}"
examples="${FUZZ_MAX_EXAMPLES:-50}"

if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "fuzz: installing schemathesis into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q schemathesis
fi
echo "fuzz: $("$venv/bin/schemathesis" --version)"

[ -n "${FUZZ_SKIP_BUILD:-}" ] || cargo build --release --locked --bin ragchat
bin="$CARGO_TARGET_DIR/release/ragchat"

work="$(mktemp -d /tmp/ragchat-fuzz.XXXXXX)"
# A copy: a build running meanwhile relinks the binary in place, and a
# server whose executable is rewritten under it dies without a word.
cp "$bin" "$work/ragchat"
bin="$work/ragchat"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        # The server leads its own process group (setsid): TERM reaches it and
        # any child it started; what is still there after 20 s gets KILL.
        kill -TERM -- "-$server_pid" 2>/dev/null || true
        for _ in $(seq 200); do
            kill -0 -- "-$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
cleanup() {
    local rc=$?
    stop_server
    # A failed run keeps its server log and reports for a look.
    if [ -n "${FUZZ_KEEP:-}" ] || [ "$rc" -ne 0 ]; then
        echo "fuzz: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export RAGCHAT_DATA_DIR="$work/data"
export RAGCHAT_AUTH_JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
# Schemathesis sends thousands of requests from one address.
export RAGCHAT_RATE_LIMIT_ENABLED=false
# Deterministic, quick answers whatever models are installed.
export RAGCHAT_CHAT_BACKEND=extractive
export RAGCHAT_LOG_LEVEL="${RAGCHAT_LOG_LEVEL:-warn}"

password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
"$bin" ingest corpus --collection docs --public > /dev/null
"$bin" user create fuzzadmin --admin --password "$password" > /dev/null
"$bin" user create fuzzuser --password "$password" > /dev/null

setsid "$bin" serve --bind 127.0.0.1:0 > "$work/server.out" 2> "$work/server.log" &
server_pid=$!
addr=""
for _ in $(seq 600); do
    addr="$(sed -n 's/^ragchat listening on //p' "$work/server.out")"
    [ -n "$addr" ] && curl -sf "$addr/ready" > /dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "fuzz: the server died" >&2; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "fuzz: the server did not start (log: $work/server.log)" >&2; exit 1; }
echo "fuzz: server at $addr (data $RAGCHAT_DATA_DIR)"

token_of() {
    curl -sf -X POST "$addr/api/v1/auth/login" -H 'content-type: application/json' \
        -d "{\"username\": \"$1\", \"password\": \"$password\"}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

# Ids that exist, so the fuzzer gets past "not found": the sample
# collection, one of its documents, a job (an upload into a second
# collection), the user, and a conversation of the caller's. Written as a
# Schemathesis config that pins the `{id}`-style path parameters of the
# operations that read or change one; deletes keep random ids, so one test
# case cannot take the fixture away from all the others.
fixtures() {
    python3 - "$addr" "$1" "$2" > "$work/$3.toml" <<'PY'
import json, sys, urllib.request
addr, admin, token = sys.argv[1:4]
def call(method, path, tok, body=None, ctype="application/json"):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(addr + path, data=data, method=method,
                                 headers={"authorization": "Bearer " + tok, "content-type": ctype})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
docs = next(c for c in call("GET", "/api/v1/collections", admin)["items"] if c["name"] == "docs")
doc = call("GET", f"/api/v1/collections/{docs['id']}/documents?limit=1", admin)["items"][0]
jobs = call("GET", "/api/v1/jobs?limit=1", admin)["items"]
if not jobs:
    other = call("POST", "/api/v1/collections", admin, {"name": "fuzz-uploads"})
    form = (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"note.txt\"\r\n"
            b"Content-Type: text/plain\r\n\r\nA short note about shock waves and pressure.\r\n--x--\r\n")
    jobs = [call("POST", f"/api/v1/collections/{other['id']}/documents", admin, form,
                 "multipart/form-data; boundary=x")["job"]]
user = next(u for u in call("GET", "/api/v1/admin/users", admin)["items"] if u["username"] == "fuzzuser")
conversation = call("POST", "/api/v1/conversations", token, {"title": "fuzz"})
pins = [
    ("/api/v1/collections/{id}", {"path.id": docs["id"]}),
    ("/api/v1/collections/{id}/grants", {"path.id": docs["id"]}),
    ("/api/v1/collections/{id}/grants/{user_id}", {"path.id": docs["id"], "path.user_id": user["id"]}),
    ("/api/v1/collections/{id}/documents", {"path.id": docs["id"]}),
    ("/api/v1/collections/{id}/documents/{doc}", {"path.id": docs["id"], "path.doc": doc["id"]}),
    ("/api/v1/collections/{id}/crawl", {"path.id": docs["id"]}),
    ("/api/v1/conversations/{id}", {"path.id": conversation["id"]}),
    ("/api/v1/conversations/{id}/messages", {"path.id": conversation["id"]}),
    ("/api/v1/jobs/{id}", {"path.id": jobs[0]["id"]}),
    ("/api/v1/jobs/{id}/cancel", {"path.id": jobs[0]["id"]}),
    ("/api/v1/jobs/{id}/events", {"path.id": jobs[0]["id"]}),
    ("/api/v1/admin/users/{id}", {"path.id": user["id"]}),
]
for path, params in pins:
    print("[[operations]]")
    print(f"include-path = {json.dumps(path)}")
    print('exclude-method = "DELETE"')
    print("parameters = { " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in params.items()) + " }")
    print()
PY
}

# One run as `$1`: its exit status, and its summary in $work/$1.summary.
fuzz_as() {
    local who="$1" token
    shift
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "fuzz: the server is gone; its log ends:" >&2
        tail -n 20 "$work/server.log" >&2
        echo "$who: not run (the server is gone)" > "$work/$who.summary"
        return 1
    fi
    # A fresh token per run: access tokens last auth.access_ttl_secs (900).
    token="$(token_of "fuzz$who")" || return 1
    fixtures "$(token_of fuzzadmin)" "$token" "$who" || return 1
    local args=(
        --config-file "$work/$who.toml"
        run "$addr/api/openapi.json"
        --url "$addr"
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
        --header "Authorization: Bearer $token"
        --max-examples "$examples"
        --request-timeout 30
        --report junit --report-junit-path "$work/$who.junit.xml"
    )
    [ -z "${FUZZ_SEED:-}" ] || args+=(--seed "$FUZZ_SEED")
    echo
    echo "==================== schemathesis as $who ===================="
    local rc=0
    # From the scratch directory: Schemathesis keeps a cache where it runs.
    (cd "$work" && "$venv/bin/schemathesis" "${args[@]}" "$@") | tee "$work/$who.out" || rc=$?
    python3 - "$work/$who.junit.xml" "$who" "$rc" > "$work/$who.summary" <<'PY'
import sys
import xml.etree.ElementTree as ET
path, who, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    root = ET.parse(path).getroot()
except (OSError, ET.ParseError) as e:
    print(f"{who}: no report ({e}); schemathesis exited {rc}")
    sys.exit()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = sum(int(s.get("tests", 0)) for s in suites)
failures = sum(int(s.get("failures", 0)) for s in suites)
errors = sum(int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(f"{who}: {tests} operations tested, {tests - failures - errors - skipped} passed, "
      f"{failures} with failures, {errors} errors, {skipped} skipped; schemathesis exited {rc}")
PY
    return "$rc"
}

status=0
fuzz_as user "$@" || status=1
fuzz_as admin "$@" || status=1

# Failures on our side are logged at ERROR. actix-http's own reports of
# requests too malformed to parse (Schemathesis sends some) are not ours.
if grep -E 'ERROR|panicked' "$work/server.log" | grep -v -q 'actix_http::h1::dispatcher'; then
    echo
    echo "fuzz: the server logged errors:"
    grep -E 'ERROR|panicked' "$work/server.log" | grep -v 'actix_http::h1::dispatcher' | head -20
    status=1
fi
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo
    echo "fuzz: the server died during the runs; its log ends:"
    tail -n 20 "$work/server.log"
    status=1
fi
stop_server

echo
echo "==================== fuzz summary ===================="
for who in user admin; do
    # Schemathesis's own count of test cases, e.g. "1573 generated, 1570 passed, 3 failed".
    cases="$(grep -A1 '^Test cases:' "$work/$who.out" 2>/dev/null | tail -n 1 | sed 's/^ *//')"
    echo "$who: test cases: ${cases:-none}"
    cat "$work/$who.summary" 2>/dev/null || echo "$who: not run"
done
exit "$status"
