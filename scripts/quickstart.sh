#!/usr/bin/env bash
# From a fresh clone to a running server: install the models, build, ingest the
# sample knowledge base in corpus/ into the collection `docs`, and serve on
# ${RAGCHAT_BIND:-127.0.0.1:8080} with the embedded defaults (SQLite, qdrant-edge,
# Tantivy, all under ./data).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"

scripts/setup-models.sh "$RAGCHAT_MODELS_DIR"
echo "building ragchat (the first build compiles the dependency tree and takes a while)..."
cargo build --release --locked --bin ragchat
bin="$CARGO_TARGET_DIR/release/ragchat"
"$bin" ingest corpus --collection docs
echo
echo "try:  curl -s 'http://${RAGCHAT_BIND:-127.0.0.1:8080}/api/v1/query?q=how+does+hybrid+retrieval+work&top_k=3'"
exec "$bin" serve
