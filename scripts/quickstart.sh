#!/usr/bin/env bash
# From a fresh clone to a running server: install the models, build, ingest the
# sample knowledge base in corpus/ into the public collection `docs`, create an
# admin account on first run, and serve on ${RAGCHAT_BIND:-127.0.0.1:8080} with
# the embedded defaults (SQLite, qdrant-edge, Tantivy, all under ./data).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"
data="${RAGCHAT_DATA_DIR:-./data}"
bind="${RAGCHAT_BIND:-127.0.0.1:8080}"

scripts/setup-build-deps.sh
# Without the local chat model: SmolLM2-135M is a demo that invents details,
# so newcomers get the extractive answerer, which only quotes the sources.
# `scripts/setup-models.sh --with-llm` installs it; `chat.backend = "auto"`
# then uses it.
scripts/setup-models.sh "$RAGCHAT_MODELS_DIR"
echo "building ragchat (the first build compiles the dependency tree and takes a while)..."
cargo build --release --locked --bin ragchat
bin="$CARGO_TARGET_DIR/release/ragchat"
mkdir -p "$data"

# A signing secret generated once and kept with the data, so tokens survive
# restarts; an explicit RAGCHAT_AUTH_JWT_SECRET wins.
if [ -z "${RAGCHAT_AUTH_JWT_SECRET:-}" ]; then
    if [ ! -s "$data/jwt-secret" ]; then
        (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$data/jwt-secret")
    fi
    RAGCHAT_AUTH_JWT_SECRET="$(cat "$data/jwt-secret")"
    export RAGCHAT_AUTH_JWT_SECRET
fi

# The first admin, with a random password kept (readable only by you) in the data dir.
if [ ! -s "$data/admin-password" ]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(18))' > "$data/admin-password.new")
    "$bin" user create admin --admin --password-stdin < "$data/admin-password.new" > /dev/null
    mv "$data/admin-password.new" "$data/admin-password"
fi

"$bin" ingest corpus --collection docs --public
cat <<MSG

Open http://$bind/ in a browser and sign in as admin (password in $data/admin-password).
The API's description: http://$bind/api/docs. From a terminal:
  token=\$(curl -s -X POST http://$bind/api/v1/auth/login -H 'content-type: application/json' \\
      -d "{\"username\": \"admin\", \"password\": \"\$(cat $data/admin-password)\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s -H "authorization: Bearer \$token" 'http://$bind/api/v1/query?q=how+does+hybrid+retrieval+work&top_k=3'

MSG
exec "$bin" serve --bind "$bind"
