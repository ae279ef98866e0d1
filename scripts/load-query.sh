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
#   LOAD_NODES=N (default 1)          API nodes, each on its own data directory
#       ($LOAD_DATA_DIR, then $LOAD_DATA_DIR-node2, ...); the 16 connections
#       are split between them (one wrk each) and their requests/s added up.
#       More than one node needs a shared database and vector index:
#       RAGCHAT_DATABASE_URL (PostgreSQL) and RAGCHAT_QDRANT_URL set.
#   LOAD_CONNECTIONS=16               wrk connections in all
#   LOAD_QUERY_CACHE=off (default) | on
#       on keeps the query-vector cache: after the first pass over the
#       queries no request embeds, so retrieval and the request path are what
#       is measured, not the embedding model.
#   LOAD_RESULT_CACHE=off (default) | on
#       on keeps /query results (the result cache; in Redis when
#       RAGCHAT_REDIS_URL is set): a repeated query is then a cache hit.
#   Any other RAGCHAT_* setting is passed to the servers (e.g. the Qdrant
#   server: scripts/load-cluster.sh runs this script that way).
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
nodes="${LOAD_NODES:-1}"
case "${LOAD_QUERY_CACHE:-off}" in
  off) cache_size=0 ;;
  on) cache_size=4096 ;;
  *) echo "LOAD_QUERY_CACHE: on or off" >&2; exit 2 ;;
esac
case "${LOAD_RESULT_CACHE:-off}" in
  off) results_cache=false ;;
  on) results_cache=true ;;
  *) echo "LOAD_RESULT_CACHE: on or off" >&2; exit 2 ;;
esac
connections="${LOAD_CONNECTIONS:-16}"
if [ "$nodes" -gt 1 ] && { [ -z "${RAGCHAT_QDRANT_URL:-}" ] || [ -z "${RAGCHAT_DATABASE_URL:-}" ]; }; then
  echo "LOAD_NODES=$nodes: several nodes share only a server database and a Qdrant server;" >&2
  echo "set RAGCHAT_DATABASE_URL and RAGCHAT_QDRANT_URL (scripts/load-cluster.sh does)" >&2
  exit 2
fi
export RAGCHAT_AUTH_JWT_SECRET="${RAGCHAT_AUTH_JWT_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(32))')}"
export RAGCHAT_RATE_LIMIT_ENABLED=false

# LOAD_SKIP_BUILD=1 measures the binary already built.
[ -n "${LOAD_SKIP_BUILD:-}" ] || cargo build --release --locked --bin ragchat
bin="$CARGO_TARGET_DIR/release/ragchat"
"$bin" ingest "$corpus_dir/corpus.jsonl" --collection "$collection" --public
password=load-test-password
"$bin" user create loaduser --password "$password" >/dev/null 2>&1 || true

lua=$(mktemp --suffix .lua)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$lua" "$work"
}
trap cleanup EXIT
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
# Start one node on data directory $1 and wait until it is ready (a new
# node first builds its lexical index from the database); its address goes
# to `addrs`. Not in a subshell, so `pids` keeps the server for cleanup.
start_node() {
  local dir="$1" log="$work/node-$2.log" addr=""
  RAGCHAT_DATA_DIR="$dir" RAGCHAT_JOBS_WORKERS=0 RAGCHAT_EMBEDDING_QUERY_CACHE_SIZE="$cache_size" RAGCHAT_CACHE_RESULTS="$results_cache" \
    RAGCHAT_LOG_LEVEL=warn "$bin" serve --bind 127.0.0.1:0 > "$log" &
  pids+=($!)
  for _ in $(seq 1 3000); do
    addr=$(sed -n 's/^ragchat listening on //p' "$log")
    [ -n "$addr" ] && curl -sf "$addr/ready" >/dev/null && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "node $2 did not start (log: $log)" >&2; exit 1; }
  addrs+=("$addr")
}
addrs=()
for n in $(seq 1 "$nodes"); do
  dir="$RAGCHAT_DATA_DIR"
  [ "$n" -eq 1 ] || dir="$RAGCHAT_DATA_DIR-node$n"
  start_node "$dir" "$n"
done
addr="${addrs[0]}"
login=$(curl -sf -X POST "$addr/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"username\": \"loaduser\", \"password\": \"$password\"}")
token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["access_token"])' "$login")
if [ "$auth" = key ]; then
  created=$(curl -sf -X POST "$addr/api/v1/api-keys" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"name": "load", "scopes": ["query"]}')
  token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$created")
fi
vectors="qdrant-edge"
[ -z "${RAGCHAT_QDRANT_URL:-}" ] || vectors="Qdrant server $RAGCHAT_QDRANT_URL"
echo "nodes ${addrs[*]}; vectors $vectors; target $target; auth $auth; $(grep -c . "$corpus_dir/queries.jsonl") distinct queries, query-vector cache ${LOAD_QUERY_CACHE:-off}, result cache ${LOAD_RESULT_CACHE:-off}"
if [ "$nodes" -eq 1 ]; then
  wrk -t2 -c"$connections" -d"$duration" --latency -H "authorization: Bearer $token" -s "$lua" "$addr"
  exit 0
fi
# One wrk per node, all at once, the connections split evenly.
per=$(( connections / nodes ))
wpids=()
for n in $(seq 1 "$nodes"); do
  wrk -t1 -c"$per" -d"$duration" --latency -H "authorization: Bearer $token" -s "$lua" \
    "${addrs[$((n - 1))]}" > "$work/wrk-$n.txt" &
  wpids+=($!)
done
for p in "${wpids[@]}"; do wait "$p"; done
for n in $(seq 1 "$nodes"); do
  echo "---- node $n (${addrs[$((n - 1))]}), $per connections"
  cat "$work/wrk-$n.txt"
done
awk '/^Requests\/sec:/ { total += $2 } END { printf "all %d nodes: %.1f requests/s\n", n, total }' n="$nodes" "$work"/wrk-*.txt
