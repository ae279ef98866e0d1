#!/usr/bin/env bash
# Runs every test: installs the models the tests need (idempotent), then the
# unit and black-box suites. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Outside the clone, so a fresh checkout (and CI) reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ragchat-target}"
export RAGCHAT_MODELS_DIR="${RAGCHAT_MODELS_DIR:-$PWD/models}"

scripts/setup-models.sh "$RAGCHAT_MODELS_DIR"
cargo test --release --locked "$@"
