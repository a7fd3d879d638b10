#!/usr/bin/env bash
# Entrypoint of the devstack cp-kafka stand-in (tansu, a Kafka-protocol broker).
# Maps the cp-kafka environment onto `tansu broker`:
#   KAFKA_ADVERTISED_LISTENERS  e.g. PLAINTEXT://kafka:29092,PLAINTEXT_HOST://127.0.0.1:9092
#       -> the advertised URL is the PLAINTEXT_HOST listener (the one for clients on the host);
#          without one, the first listener; without any, tcp://localhost:9092.
#       tansu has a single listener: it listens on 0.0.0.0:$TANSU_LISTEN_PORT (default 9092), so
#       the container port to publish is 9092 whatever the listeners say.
#   CLUSTER_ID / KAFKA_CLUSTER_ID -> --cluster-id
#   TANSU_STORAGE_ENGINE -> --storage-engine; default sqlite://tansu.db, a file in the working
#       directory /var/lib/kafka/data (tansu resolves sqlite:// URLs against it); memory://tansu/
#       keeps everything in memory instead.
#   KAFKA_ZOOKEEPER_CONNECT, KAFKA_BROKER_ID, ... are accepted and ignored (single broker).
# Then execs tansu in the foreground (PID 1; it handles SIGTERM/SIGINT itself).
set -Eeuo pipefail

if [[ ${1:-} == -* ]]; then set -- broker "$@"; fi
if [[ ${1:-} != broker ]]; then exec "$@"; fi
shift

listen_port=${TANSU_LISTEN_PORT:-9092}
advertised=
if [[ -n ${KAFKA_ADVERTISED_LISTENERS:-} ]]; then
    IFS=',' read -ra listeners <<<"${KAFKA_ADVERTISED_LISTENERS// /}"
    first=
    for l in "${listeners[@]}"; do
        [[ $l == *://* ]] || continue
        name=${l%%://*} hostport=${l#*://}
        [[ -z $first ]] && first=$hostport
        if [[ $name == PLAINTEXT_HOST ]]; then advertised=$hostport; fi
    done
    advertised=${advertised:-$first}
fi
advertised=${advertised:-localhost:$listen_port}
# An empty host (PLAINTEXT://:9092) means this container's hostname.
if [[ $advertised == :* ]]; then advertised="$(hostname)$advertised"; fi

cluster_id=${CLUSTER_ID:-${KAFKA_CLUSTER_ID:-tansu_cluster}}
storage=${TANSU_STORAGE_ENGINE:-sqlite://tansu.db}
if [[ $storage == sqlite://* ]]; then mkdir -p /var/lib/kafka/data && cd /var/lib/kafka/data; fi

echo "devstack cp-kafka stand-in (tansu): listening on 0.0.0.0:$listen_port, advertising $advertised (from KAFKA_ADVERTISED_LISTENERS=${KAFKA_ADVERTISED_LISTENERS:-unset}), storage $storage"
if [[ -n ${KAFKA_ZOOKEEPER_CONNECT:-} ]]; then echo "note: KAFKA_ZOOKEEPER_CONNECT is ignored: tansu needs no ZooKeeper"; fi

# tansu's info level logs every request's tracing spans: keep the merged log readable.
export RUST_LOG=${RUST_LOG:-warn}
export NO_COLOR=${NO_COLOR-1}   # plain text in `docker logs` (set NO_COLOR= to get colours)
unset CLUSTER_ID LISTENER_URL ADVERTISED_LISTENER_URL STORAGE_ENGINE   # tansu reads these too
exec tansu broker \
    --cluster-id "$cluster_id" \
    --listener-url "tcp://0.0.0.0:$listen_port" \
    --advertised-listener-url "tcp://$advertised" \
    --storage-engine "$storage" \
    "$@"
