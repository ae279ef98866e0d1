#!/usr/bin/env bash
# Regenerates the web app's screenshots in docs/images/ (web-*.png): the
# browser tests save one per screen when RAGCHAT_SCREENSHOTS names a
# directory. Needs what scripts/test.sh installs (models, chromium,
# chromium-driver); runs on SQLite with the embedded vector index.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"
export RAGCHAT_SCREENSHOTS="$PWD/docs/images"
export RAGCHAT_TEST_REQUIRE_BROWSER=1
unset RAGCHAT_TEST_POSTGRES RAGCHAT_TEST_QDRANT_URL RAGCHAT_TEST_REQUIRE_QDRANT
cargo test --release --locked --test api -- browser:: --test-threads 1 "$@"
ls -l docs/images/web-*.png
