#!/usr/bin/env bash
# The one entry point for all checks: formatting, lints, and every test.
# CI runs exactly this (.ci/run); so should you before pushing.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "prepare: Docker engine, local images, client tools, example virtualenv"
scripts/prepare-test-env.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test --all-targets
