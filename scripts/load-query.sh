#!/usr/bin/env bash
# Load test of /api/v1/query with wrk at concurrency 16 over the SciFact corpus.
#
#   scripts/load-query.sh [DURATION (default 30s)] [CORPUS_DIR (default ../shared/eval/scifact-train)]
#
# Ingests the corpus into a scratch data directory (reused across runs) as a
# public collection, creates a normal user, starts the release server on a free
# port with the query-vector cache disabled (so every request embeds its query)
# and rate limits off, replays the dataset's queries in a loop, and prints wrk's
# latency distribution and requests/s. Traffic stays on 127.0.0.1.
#
#   LOAD_AUTH=jwt (default) | key     credential sent with every request
#   LOAD_TARGET=query (default) | me | health
#       `me` (GET /api/v1/users/me) costs authentication and nothing else;
#       `health` costs neither: their difference is the price of auth.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration="${1:-30s}"
corpus_dir="${2:-../shared/eval/scifact-train}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"
export RAGCHAT_DATA_DIR="${LOAD_DATA_DIR:-/tmp/ragchat-load}"
# An existing collection holding the same corpus (e.g. one `ragchat eval` made)
# is reused: unchanged documents are not embedded again.
collection="${LOAD_COLLECTION:-scifact}"
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }

auth="${LOAD_AUTH:-jwt}"
target="${LOAD_TARGET:-query}"
export RAGCHAT_AUTH_JWT_SECRET="${RAGCHAT_AUTH_JWT_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(32))')}"
export RAGCHAT_RATE_LIMIT_ENABLED=false

# LOAD_SKIP_BUILD=1 measures the binary already built.
[ -n "${LOAD_SKIP_BUILD:-}" ] || cargo build --release --locked --bin ragchat
bin="$CARGO_TARGET_DIR/release/ragchat"
"$bin" ingest "$corpus_dir/corpus.jsonl" --collection "$collection" --public
password=load-test-password
"$bin" user create loaduser --password "$password" >/dev/null 2>&1 || true

lua=$(mktemp --suffix .lua)
log=$(mktemp)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$lua" "$log"' EXIT
python3 - "$corpus_dir/queries.jsonl" "$collection" "$target" > "$lua" <<'PY'
import json, sys, urllib.parse
paths = []
if sys.argv[3] == "me":
    paths.append("/api/v1/users/me")
elif sys.argv[3] == "health":
    paths.append("/health")
else:
  for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        q = json.loads(line)["text"]
        paths.append("/api/v1/query?collections=%s&top_k=10&q=%s" % (urllib.parse.quote(sys.argv[2]), urllib.parse.quote(q)))
print("local paths = {")
for p in paths:
    print("  %s," % json.dumps(p))
print("}")
print("local i = 0")
print("request = function()\n  i = i + 1\n  return wrk.format('GET', paths[(i % #paths) + 1])\nend")
print("done = function(summary, latency, requests)\n  io.write(string.format('non-2xx or errors: %d\\n', summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))\nend")
PY
RAGCHAT_EMBEDDING_QUERY_CACHE_SIZE=0 RAGCHAT_LOG_LEVEL=warn "$bin" serve --bind 127.0.0.1:0 > "$log" &
pid=$!
for _ in $(seq 1 600); do
  addr=$(sed -n 's/^ragchat listening on //p' "$log")
  [ -n "$addr" ] && curl -sf "$addr/ready" >/dev/null && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "server did not start" >&2; exit 1; }
login=$(curl -sf -X POST "$addr/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"username\": \"loaduser\", \"password\": \"$password\"}")
token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["access_token"])' "$login")
if [ "$auth" = key ]; then
  created=$(curl -sf -X POST "$addr/api/v1/api-keys" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"name": "load", "scopes": ["query"]}')
  token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$created")
fi
echo "server $addr; target $target; auth $auth; $(grep -c . "$corpus_dir/queries.jsonl") distinct queries, cache off"
wrk -t2 -c16 -d"$duration" --latency -H "authorization: Bearer $token" -s "$lua" "$addr"
