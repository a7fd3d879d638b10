#!/usr/bin/env bash
# Benchmark: `devstack up --wait` of the reference stack's five infrastructure services against
# `docker-compose up -d` with healthcheck-gated `depends_on` on the same local images, measured
# in the same run. Prints the median of each and the ratio (compose / devstack; > 1 means devstack
# is faster).
#
#   bench/up-vs-compose.sh [RUNS]        (default 5 runs of each case)
#
# Cases:
#   cold  fresh named volumes, no containers (both tools create everything; postgres runs initdb)
#   warm  containers exist but are stopped, volumes initialised (the morning after a Ctrl-C)
# "Ready" for compose means every container's healthcheck reports healthy (polled every 50 ms);
# healthchecks run every 1 s (start-period 0), the fastest compose v1 allows by default.
# For devstack it is `up --wait` returning 0 (its own protocol probes).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
command -v docker-compose >/dev/null || { echo "needs docker-compose (apt-get install docker-compose)" >&2; exit 1; }
# DEVSTACK_BIN measures another build (e.g. the previous release, for before/after numbers).
if [ -z "${DEVSTACK_BIN:-}" ]; then cargo build --release -q; fi
devstack="${DEVSTACK_BIN:-$PWD/target/release/devstack}"
work=$(mktemp -d)
trap 'cleanup; rm -rf "$work"' EXIT

# Same host ports for both tools (they never run at the same time).
pick() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PG=$(pick) RD=$(pick) QD=$(pick) ZK=$(pick) KF=$(pick)
cat > "$work/ports.yaml" <<YAML
services:
  postgres: { ports: !override ["$PG:5432"] }
  redis: { ports: !override ["$RD:6379"] }
  qdrant: { ports: !override ["$QD:6333"] }
  zookeeper: { ports: !override ["$ZK:2181"] }
  kafka: { ports: !override ["$KF:9092"] }
YAML
cat > "$work/docker-compose.yml" <<YAML
version: "2.4"
services:
  zookeeper:
    image: confluentinc/cp-zookeeper:latest
    environment: { ZOOKEEPER_CLIENT_PORT: "2181" }
    ports: ["127.0.0.1:$ZK:2181"]
    healthcheck: { test: ["CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/2181; echo ruok >&3; read -t 2 r <&3; [ \"\$\$r\" = imok ]"], interval: 1s, timeout: 2s, retries: 120 }
  kafka:
    image: confluentinc/cp-kafka:latest
    environment:
      KAFKA_BROKER_ID: "1"
      KAFKA_ZOOKEEPER_CONNECT: zookeeper:2181
      KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka:29092,PLAINTEXT_HOST://127.0.0.1:$KF
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT
    ports: ["127.0.0.1:$KF:9092"]
    depends_on: { zookeeper: { condition: service_healthy } }
    healthcheck: { test: ["CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9092"], interval: 1s, timeout: 2s, retries: 120 }
  postgres:
    image: postgres:15
    environment: { POSTGRES_USER: user, POSTGRES_PASSWORD: pass, POSTGRES_DB: ensurestudy }
    ports: ["127.0.0.1:$PG:5432"]
    volumes: ["postgres_data:/var/lib/postgresql/data"]
    healthcheck: { test: ["CMD-SHELL", "PGPASSWORD=pass psql -h 127.0.0.1 -U user -d ensurestudy -tAc 'select 1'"], interval: 1s, timeout: 2s, retries: 120 }
  qdrant:
    image: qdrant/qdrant:latest
    ports: ["127.0.0.1:$QD:6333"]
    volumes: ["qdrant_data:/qdrant/storage"]
    healthcheck: { test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6333/readyz')"], interval: 1s, timeout: 2s, retries: 120 }
  redis:
    image: redis:7-alpine
    ports: ["127.0.0.1:$RD:6379"]
    volumes: ["redis_data:/data"]
    healthcheck: { test: ["CMD", "redis-cli", "ping"], interval: 1s, timeout: 2s, retries: 120 }
volumes: { postgres_data: {}, qdrant_data: {}, redis_data: {} }
YAML

ds() { (cd "$work" && "$devstack" -f "$OLDPWD/stack.yaml" -f ports.yaml -p benchds "$@"); }
dc() { docker-compose -f "$work/docker-compose.yml" -p benchdc "$@"; }
services=(zookeeper kafka postgres redis qdrant)
cleanup() { ds down -v >/dev/null 2>&1 || true; dc down -v >/dev/null 2>&1 || true; }
now_ms() { date +%s%3N; }

compose_ready() {
  local deadline=$(( $(now_ms) + 180000 ))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    local all=1
    for s in "${services[@]}"; do
      st=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "benchdc_${s}_1" 2>/dev/null || echo missing)
      [ "$st" = healthy ] || { all=0; break; }
    done
    [ "$all" = 1 ] && return 0
    sleep 0.05
  done
  echo "compose stack not healthy within 180 s" >&2; return 1
}

# The whole machine's busy CPU time (every process: the engine, its storage driver, the services
# booting, devstack) in ms, from /proc/stat's jiffies: a bound only on a machine doing nothing
# else.
busy_ms() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{print int(($2+$3+$4+$7+$8)*1000/hz)}' /proc/stat; }
# devstack's time; also adds the machine's busy CPU time during the run, divided by the cores
# (what no order of starts can beat on this machine), to the array named by $1.
# The same run's CPU time by part (bench/cpu_by_part.py: the engine, the services, the rest) goes
# to "$work/parts-$1" as one JSON line.
time_ds() {
  local t0 b0 t; python3 bench/cpu_by_part.py snap "$work/procs"; b0=$(busy_ms); t0=$(now_ms)
  ds up --wait "${services[@]}" >/dev/null 2>&1; t=$(( $(now_ms) - t0 ))
  eval "$1+=(\$(( ($(busy_ms) - b0) / $(nproc) )))"
  python3 bench/cpu_by_part.py diff "$work/procs" >> "$work/parts-$1"
  echo "$t" > "$work/t"
}
time_dc() { local t0; t0=$(now_ms); dc up -d >/dev/null 2>&1; compose_ready; echo $(( $(now_ms) - t0 )); }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

declare -a ds_cold dc_cold ds_warm dc_warm fl_cold fl_warm fn_cold fn_warm cpu_cold cpu_warm
cleanup
ds config --json --show-secrets > "$work/config.json"
for i in $(seq 1 "$runs"); do
  floor=$(python3 bench/floor.py "$work/config.json" "${services[@]}")
  fl_cold+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['cold'])" "$floor")")
  fl_warm+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['warm'])" "$floor")")
  fn_cold+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['cold_net'])" "$floor")")
  fn_warm+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['warm_net'])" "$floor")")
  ds down -v >/dev/null 2>&1 || true
  time_ds cpu_cold; ds_cold+=("$(cat "$work/t")")
  docker stop -t 10 $(docker ps -q --filter label=org.devstack.project=benchds) >/dev/null
  time_ds cpu_warm; ds_warm+=("$(cat "$work/t")")
  ds down -v >/dev/null 2>&1

  dc down -v >/dev/null 2>&1 || true
  dc_cold+=("$(time_dc)")
  dc stop -t 10 >/dev/null 2>&1
  dc_warm+=("$(time_dc)")
  dc down -v >/dev/null 2>&1
  echo "run $i: devstack cold ${ds_cold[-1]} ms, warm ${ds_warm[-1]} ms; docker-compose cold ${dc_cold[-1]} ms, warm ${dc_warm[-1]} ms; floor cold ${fl_cold[-1]} ms, warm ${fl_warm[-1]} ms (on a network of its own: ${fn_cold[-1]}, ${fn_warm[-1]} ms); machine busy (CPU time / cores) during devstack's cold ${cpu_cold[-1]} ms, warm ${cpu_warm[-1]} ms" >&2
done

mdc=$(median "${ds_cold[@]}"); mcc=$(median "${dc_cold[@]}")
mdw=$(median "${ds_warm[@]}"); mcw=$(median "${dc_warm[@]}")
mfc=$(median "${fl_cold[@]}"); mfw=$(median "${fl_warm[@]}")
mnc=$(median "${fn_cold[@]}"); mnw=$(median "${fn_warm[@]}")
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo
echo "five infrastructure services to ready, median of $runs runs ($(nproc) cores, $(docker version -f 'Docker {{.Server.Version}}'), $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /'))"
echo "floor: each service alone (docker run / docker start), probed every 5 ms; the longest chain (zookeeper then kafka) or the slowest lone service"
printf '%-6s  %12s  %16s  %10s  %s  %s\n' case devstack docker-compose floor "compose/devstack" "devstack/floor"
printf '%-6s  %9s ms  %13s ms  %7s ms  %16s  %s\n' cold "$mdc" "$mcc" "$mfc" "$(ratio "$mcc" "$mdc")" "$(ratio "$mdc" "$mfc")"
printf '%-6s  %9s ms  %13s ms  %7s ms  %16s  %s\n' warm "$mdw" "$mcw" "$mfw" "$(ratio "$mcw" "$mdw")" "$(ratio "$mdw" "$mfw")"
echo "floor on a network of its own (as a stack runs, with the engine's embedded DNS set up at each start): cold $mnc ms (devstack $(ratio "$mdc" "$mnc")x), warm $mnw ms (devstack $(ratio "$mdw" "$mnw")x)"
# The floor sums lone starts; run together, five containers and their boots share the cores.
mbc=$(median "${cpu_cold[@]}"); mbw=$(median "${cpu_warm[@]}")
# Medians of each part's CPU time.
parts() { python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(", ".join(f"{k} {statistics.median(r[k] for r in rows):.0f} ms" for k in rows[0]))' "$work/parts-$1"; }
echo "CPU time during devstack's run by part (median): cold $(parts cpu_cold); warm $(parts cpu_warm)"
echo "machine busy during devstack's run (all processes' CPU time / $(nproc) cores, a bound no order of starts beats): cold $mbc ms ($(ratio "$mdc" "$mbc")x of it), warm $mbw ms ($(ratio "$mdw" "$mbw")x of it)"
# One line per figure for bench/run-all (see bench/metric.py).
metric() { printf 'METRIC {"name": "%s", "devstack": %s, "unit": "ms", "peer": "%s", "value": %s, "ratio": %s, "better": "%s"}\n' "$@"; }
metric "up --wait, 5 infrastructure services, cold" "$mdc" docker-compose "$mcc" "$(ratio "$mcc" "$mdc")" higher
metric "up --wait, 5 infrastructure services, warm" "$mdw" docker-compose "$mcw" "$(ratio "$mcw" "$mdw")" higher
metric "up --wait, 5 infrastructure services, cold" "$mdc" "critical-path floor" "$mfc" "$(ratio "$mdc" "$mfc")" lower
metric "up --wait, 5 infrastructure services, warm" "$mdw" "critical-path floor" "$mfw" "$(ratio "$mdw" "$mfw")" lower
metric "up --wait, 5 infrastructure services, cold" "$mdc" "critical-path floor, own network" "$mnc" "$(ratio "$mdc" "$mnc")" lower
metric "up --wait, 5 infrastructure services, warm" "$mdw" "critical-path floor, own network" "$mnw" "$(ratio "$mdw" "$mnw")" lower
