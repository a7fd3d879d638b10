#!/usr/bin/env bash
# The README's first command, checked: `devstack up --wait` on the top-level stack.yaml (which
# prepares what this machine lacks: the base image, the Kafka stand-in's broker, the
# infrastructure images, the example's virtualenv), then every service must be ready and every
# preparation task completed (`ps --json`), then `down`. On a fresh machine this is where the
# images are built. A second `up` then shows each preparation step skipped, with its time.
#
# Usage: scripts/main-job-check.sh [DEVSTACK_BINARY]     (default: target/debug/devstack)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/devstack}

t0=$(date +%s.%N)
"$bin" up --wait --no-dashboard
t1=$(date +%s.%N)
check() {
  "$bin" ps --json | python3 -c '
import json, sys
ps = {s["service"]: s["state"] for s in json.load(sys.stdin)}
apps = ["zookeeper", "kafka", "postgres", "qdrant", "redis", "core-service", "celery-worker", "ai-service", "frontend"]
tasks = ["debian-base", "kafka-broker", "venv"]
bad = [f"{s}: {ps.get(s)}" for s in apps if ps.get(s) != "ready"] + [f"{t}: {ps.get(t)}" for t in tasks if ps.get(t) != "completed"]
if bad:
    sys.exit("main job: not ready: " + ", ".join(bad))
print(f"main job: all {len(apps)} services ready, {len(tasks)} preparation tasks completed")
'
}
check
"$bin" down
echo "main job: first up --wait took $(python3 -c "print(round($t1 - $t0, 1))") s"

# Again: every preparation step must be skipped now.
t0=$(date +%s.%N)
"$bin" up --wait --no-dashboard
t1=$(date +%s.%N)
check
"$bin" down
echo "main job: second up --wait took $(python3 -c "print(round($t1 - $t0, 1))") s"
