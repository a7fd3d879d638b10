#!/usr/bin/env bash
# Makes this machine able to run every test: the Docker engine answering, the base images of the
# example's Compose file, and the client tools the tests drive (psql, redis-cli, redis-server,
# curl, docker-compose, kubernetes-validate, the MCP SDK, chromium and selenium). Idempotent and
# quick when everything is there; run by scripts/test.sh. What the stack itself needs (its
# images, the example's virtualenv) is not here: `devstack up` prepares it.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "prepare: $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
need_pkg() { # need_pkg COMMAND PACKAGE...
  command -v "$1" >/dev/null 2>&1 && return 0
  shift
  say "installing $* (apt)"
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

need_pkg psql postgresql-client
need_pkg redis-server redis-server
need_pkg redis-cli redis-tools
need_pkg curl curl
need_pkg python3 python3 python3-venv
need_pkg docker-compose docker-compose   # `render compose` output is checked with `docker-compose config`

# The Docker engine: use the one that answers; otherwise install and start one.
if ! docker version >/dev/null 2>&1; then
  need_pkg dockerd docker.io
  if [ -z "${DOCKER_HOST:-}" ] && ! pgrep -x dockerd >/dev/null; then
    say "starting dockerd (log: /var/log/devstack-dockerd.log)"
    as_root sh -c 'nohup dockerd >/var/log/devstack-dockerd.log 2>&1 &'
  fi
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && break
    sleep 1
  done
  docker version >/dev/null 2>&1 || { echo "prepare: the Docker engine did not come up (see /var/log/devstack-dockerd.log)" >&2; exit 1; }
fi
say "Docker engine $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"

# The base images of the example's Compose file (`build:` FROM python:3.11-slim and node:20-alpine;
# no registry is reachable here). The infrastructure images and the example's virtualenv are the
# stack's own preparation: scripts/test.sh runs the README's first command (`devstack up`), which
# builds and makes them.
scripts/offline-images.sh python node

# kubernetes-validate (PyPI, with the official schemas bundled) for the `render k8s` schema test;
# tests/render.rs looks for it here.
kv_venv="${XDG_CACHE_HOME:-$HOME/.cache}/devstack/kubernetes-validate"
if ! "$kv_venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
  say "installing kubernetes-validate into $kv_venv (pip)"
  python3 -m venv "$kv_venv"
  "$kv_venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0
fi
# The official MCP client SDK (PyPI `mcp`) that tests/mcp.rs drives `devstack mcp` with.
mcp_venv="${XDG_CACHE_HOME:-$HOME/.cache}/devstack/mcp-client"
if ! "$mcp_venv/bin/python" -c 'import mcp' >/dev/null 2>&1; then
  say "installing the MCP client SDK into $mcp_venv (pip)"
  python3 -m venv "$mcp_venv"
  "$mcp_venv/bin/pip" install -q --disable-pip-version-check mcp
fi

say "kubernetes-validate $("$kv_venv/bin/kubernetes-validate" --version 2>&1 | tail -1)"

# The dashboard's browser tests (tests/dashboard): headless Chromium and its driver (Debian), and
# selenium + pytest in a virtualenv of their own.
need_pkg chromium chromium
need_pkg chromedriver chromium-driver
need_pkg tmux tmux   # the terminal view's tests drive devstack in a real pty
dash_venv="${XDG_CACHE_HOME:-$HOME/.cache}/devstack/dashboard-venv"
if ! "$dash_venv/bin/python" -c 'import selenium, pytest' >/dev/null 2>&1; then
  say "installing selenium and pytest into $dash_venv (pip)"
  python3 -m venv "$dash_venv"
  "$dash_venv/bin/pip" install -q --disable-pip-version-check 'selenium>=4.20' pytest
fi
say "selenium $("$dash_venv/bin/python" -c 'import selenium; print(selenium.__version__)')"
