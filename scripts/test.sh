#!/usr/bin/env bash
# The one entry point for all checks: formatting, lints, and every test.
# CI runs exactly this (.ci/run); so should you before pushing.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "prepare: Docker engine, the Compose example's base images, client tools"
scripts/prepare-test-env.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "the README's first command: devstack up (it prepares this machine: images, virtualenv)"
cargo build -q
scripts/main-job-check.sh target/debug/devstack

step "cargo test"
cargo test --all-targets --no-fail-fast

step "the example app's integration suite, through devstack test"
cargo build -q
target/debug/devstack test --services core-service,ai-service,celery-worker -- \
  examples/ensurestudy/.venv/bin/python -m pytest -q -p no:cacheprovider examples/ensurestudy/tests

step "the web dashboard in headless Chromium (selenium)"
DEVSTACK_BIN=target/debug/devstack "${XDG_CACHE_HOME:-$HOME/.cache}/devstack/dashboard-venv/bin/python" \
  -m pytest -q -p no:cacheprovider tests/dashboard

step "no leftovers from test projects"
left=$(docker ps -aq --filter label=org.devstack.project | xargs -r docker inspect -f '{{index .Config.Labels "org.devstack.project"}}' | grep -E -- '-test-|^dstest-' || true)
vols=$(docker volume ls -q --filter label=org.devstack.project | grep -E -- '-test-|^dstest-' || true)
if [ -n "$left$vols" ]; then
  echo "left behind by the tests: $left $vols" >&2
  exit 1
fi
echo "none"
