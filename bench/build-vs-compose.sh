#!/usr/bin/env bash
# Benchmark: ensureStudy's own docker-compose.yml (three app images built from Dockerfiles, nine
# services) brought up by `devstack up --wait` and by `docker-compose up -d --build` (Debian's
# docker-compose 1.29, classic builder), on the same local images, in the same run.
#
#   bench/build-vs-compose.sh [RUNS]        (default 1 run of each case; a cold run takes minutes)
#
# Cases:
#   cold  no app images and no containers (each tool builds the three images and creates all)
#   warm  everything up already, contexts unchanged (the edit-nothing-and-run-again case):
#         devstack skips the builds (hash label) and reuses the containers; compose rebuilds
#         (every step from the layer cache) and keeps the containers
# devstack's time includes its readiness probes (postgres login, redis PING, qdrant, kafka);
# compose's ends when `up -d` returns (containers started, nothing probed).
# Uses the compose file's fixed host ports (5000, 8000, 3000, 5432, 6379, 6333, 9092).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}
command -v docker-compose >/dev/null || { echo "needs docker-compose (apt-get install docker-compose)" >&2; exit 1; }
if [ -z "${DEVSTACK_BIN:-}" ]; then cargo build --release -q; fi
devstack="${DEVSTACK_BIN:-$PWD/target/release/devstack}"
file=examples/ensurestudy/docker-compose.yml
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
P=benchbuild-ds C=benchbuild-dc

rm_images() { docker images --filter "reference=$1*" --format '{{.Repository}}:{{.Tag}}' | xargs -r docker rmi -f >/dev/null 2>&1 || true; }
down_ds() { "$devstack" -f "$file" -p $P down -v >/dev/null 2>&1 || true; }
down_dc() { docker-compose -f "$file" -p $C down -v --remove-orphans >/dev/null 2>&1 || true; }
cleanup() { down_ds; down_dc; rm_images $P-; rm_images ${C}_; }
trap cleanup EXIT
secs() { python3 -c 'import sys,time; print(f"{time.time()-float(sys.argv[1]):.2f}")' "$1"; }
now() { python3 -c 'import time; print(time.time())'; }
median() { python3 -c 'import sys,statistics; print(f"{statistics.median(map(float,sys.argv[1:])):.2f}")' "$@"; }

declare -a ds_cold dc_cold ds_warm dc_warm
for _ in $(seq "$runs"); do
    cleanup
    t=$(now); "$devstack" -f "$file" -p $P up --wait >/dev/null 2>&1; ds_cold+=("$(secs "$t")")
    t=$(now); "$devstack" -f "$file" -p $P up --wait >/dev/null 2>&1; ds_warm+=("$(secs "$t")")
    # Drop devstack's images (and with them their intermediate layers), so compose's cold build
    # finds no layer cache from devstack's.
    down_ds; rm_images $P-
    t=$(now); docker-compose -f "$file" -p $C up -d --build >/dev/null 2>&1; dc_cold+=("$(secs "$t")")
    t=$(now); docker-compose -f "$file" -p $C up -d --build >/dev/null 2>&1; dc_warm+=("$(secs "$t")")
    down_dc
done
mc=$(median "${ds_cold[@]}") mw=$(median "${ds_warm[@]}")
cc=$(median "${dc_cold[@]}") cw=$(median "${dc_warm[@]}")
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.1f}x")' "$1" "$2"; }
printf '%-6s %12s %18s %8s\n' case devstack docker-compose ratio
printf '%-6s %11ss %17ss %8s\n' cold "$mc" "$cc" "$(ratio "$cc" "$mc")"
printf '%-6s %11ss %17ss %8s\n' warm "$mw" "$cw" "$(ratio "$cw" "$mw")"
echo "(median of $runs run(s); ratio = docker-compose / devstack, > 1 means devstack is faster)"
# One line per figure for bench/run-all (see bench/metric.py).
metric() { printf 'METRIC {"name": "%s", "devstack": %s, "unit": "s", "peer": "%s", "value": %s, "ratio": %s, "better": "%s"}\n' "$@"; }
num() { python3 -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.3f}")' "$1" "$2"; }
metric "ensureStudy compose file with builds, cold" "$mc" docker-compose "$cc" "$(num "$cc" "$mc")" higher
metric "ensureStudy compose file with builds, warm" "$mw" docker-compose "$cw" "$(num "$cw" "$mw")" higher
