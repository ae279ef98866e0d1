#!/usr/bin/env bash
# /query throughput and latency on the scale-out backends, beside the embedded
# vector index, with the same load tool, connections and corpus:
#
#   scripts/load-cluster.sh [DURATION (default 20s)] [CORPUS_DIR (default ../shared/eval/cranfield)]
#
#   1. one API node, vectors in qdrant-edge;
#   2. `ragchat reindex` onto a Qdrant server, then one API node on it;
#   3. two API nodes on it, each with its own lexical index, the load split
#      between them.
#
# The database is PostgreSQL in every run (a scratch database `ragchat_load`,
# dropped and created here), so only the vector index, then the node count,
# changes. The Qdrant server is a throwaway one (scripts/qdrant-test-server.sh).
# Each run is scripts/load-query.sh (wrk, 16 connections, hybrid mode,
# top_k 10), once with the query-vector cache off and once on. Everything
# runs on this machine's cores: the servers, Qdrant and wrk share them.
#
#   RAGCHAT_TEST_POSTGRES  admin URL (default postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration="${1:-20s}"
corpus="${2:-../shared/eval/cranfield}"
# shellcheck source=scripts/qdrant-test-server.sh
source scripts/qdrant-test-server.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"

if ! command -v wrk >/dev/null; then
  apt-get install -y -q wrk >/dev/null
fi
admin="${RAGCHAT_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
psql -q "$admin" -c "drop database if exists ragchat_load with (force)" -c "create database ragchat_load"
export RAGCHAT_DATABASE_URL="${admin%/*}/ragchat_load"
# Same secret for every node, so one login serves them all.
RAGCHAT_AUTH_JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export RAGCHAT_AUTH_JWT_SECRET

export LOAD_COLLECTION=cranfield
cargo build --release --locked --bin ragchat
export LOAD_SKIP_BUILD=1
bin="$CARGO_TARGET_DIR/release/ragchat"
base="$(mktemp -d)"
qdrant_test_server_start
trap 'qdrant_test_server_stop; rm -rf "$base"' EXIT
server="$RAGCHAT_TEST_QDRANT_URL"
unset RAGCHAT_TEST_QDRANT_URL QDRANT_TEST_HTTP_URL

# Each setting twice: with the query-vector cache off (every request runs the
# embedding model, the usual ceiling on these cores) and on (after the first
# pass no request embeds, so the vector index and the request path show).
runs() {
  local cache
  for cache in off on; do
    echo "---------- query-vector cache $cache"
    LOAD_QUERY_CACHE=$cache scripts/load-query.sh "$duration" "$corpus"
  done
}

echo "==================== 1 node, qdrant-edge ===================="
LOAD_DATA_DIR="$base/edge" RAGCHAT_QDRANT_URL="" runs

echo "==================== reindex onto the Qdrant server ===================="
start=$(date +%s)
RAGCHAT_DATA_DIR="$base/server" RAGCHAT_QDRANT_URL="$server" RAGCHAT_LOG_LEVEL=warn "$bin" reindex
echo "reindex took $(( $(date +%s) - start )) s"

echo "==================== 1 node, Qdrant server ===================="
LOAD_DATA_DIR="$base/server" RAGCHAT_QDRANT_URL="$server" runs

echo "==================== 2 nodes, Qdrant server ===================="
LOAD_NODES=2 LOAD_DATA_DIR="$base/server" RAGCHAT_QDRANT_URL="$server" runs
