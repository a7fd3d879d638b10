#!/usr/bin/env python3
"""Benchmark: a second instance of a stack beside the running main one, thin against full, in
one run: how long `devstack up --wait` takes until it is ready, and how many containers it adds.

    bench/thin-vs-full.py [--runs N]

Setup: a git repository whose stack.yaml has PostgreSQL and Redis (the local postgres:15 and
redis:7-alpine images from scripts/offline-images.sh, each with a protocol readiness probe), a
table with a few thousand rows, and a native process that depends on both, and
`instances: { share: [db, cache] }`. The main checkout's instance runs (`up --wait`). A linked
worktree (`git worktree add`) is the second instance:

  thin: `devstack up --wait` in the worktree: its own database (CREATE DATABASE … TEMPLATE),
        its own Redis index, its process; no container.
  full: `devstack up --wait --share ""` in the worktree: its own PostgreSQL and Redis
        containers (created from local images, volumes new) and its process.

Each run ends with `down -v` of the second instance (its database dropped, or its containers and
volumes removed), so every run starts the same. Prints the medians, the ratio full/thin
(> 1: thin is faster) and the containers each adds. The target: a thin second instance ready in
under 3 s with no extra container. Needs a Docker engine, the local images and a release build
(`cargo build --release`; DEVSTACK_BIN overrides the binary).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

import metric

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVSTACK = os.environ.get("DEVSTACK_BIN") or os.path.join(ROOT, "target/release/devstack")

STACK = """instances: { share: [db, cache] }
services:
  db:
    image: postgres:15
    environment: { POSTGRES_USER: u, POSTGRES_PASSWORD: p, POSTGRES_DB: app }
    ports: ["5432"]
    volumes: ["data:/var/lib/postgresql/data"]
    ready: { postgres: {} }
  cache:
    image: redis:7-alpine
    ports: ["6379"]
    ready: { redis: {} }
  app:
    command: sh -c 'echo "$$DB $$REDIS" > seen-${db:db}.txt && exec sleep 3600'
    environment: { DB: "${db:db}", REDIS: "redis://127.0.0.1:${port:cache:6379}/${db:cache}" }
    depends_on: [db, cache]
    ready: { exec: "test -s seen-${db:db}.txt" }
"""


def run(cmd, cwd, env, check=True):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r


def containers(project):
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=org.devstack.project={project}"],
                         capture_output=True, text=True).stdout
    return len(out.split())


def timed_up(dev, wt, env, extra, project):
    t = time.monotonic()
    run(dev + ["up", "--wait"] + extra, wt, env)
    took = time.monotonic() - t
    n = containers(project)
    run(dev + ["down", "-v"], wt, env)
    return took, n


def git(args, cwd):
    run(["git", "-c", "user.name=b", "-c", "user.email=b@b", "-c", "init.defaultBranch=main"] + args, cwd, None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    base = f"dstest-bench-thin-{os.getpid()}"
    with tempfile.TemporaryDirectory() as d:
        main_dir, wt = os.path.join(d, "main"), os.path.join(d, "second")
        os.makedirs(main_dir)
        open(os.path.join(main_dir, "stack.yaml"), "w").write(STACK)
        git(["init", "-q"], main_dir)
        git(["add", "stack.yaml"], main_dir)
        git(["commit", "-q", "-m", "stack"], main_dir)
        git(["worktree", "add", "-q", "-b", "second", wt], main_dir)
        env = dict(os.environ, XDG_STATE_HOME=os.path.join(d, "state"), NO_COLOR="1")
        dev = [DEVSTACK, "-p", base]
        try:
            run(dev + ["up", "--wait"], main_dir, env)
            sql = "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g"
            run(dev + ["exec", "-T", "db", "--", "psql", "-U", "u", "-d", "app", "-c", sql], main_dir, env)
            thin, full = [], []
            for _ in range(a.runs):
                thin.append(timed_up(dev, wt, env, [], f"{base}-second"))
                full.append(timed_up(dev, wt, env, ["--share", ""], f"{base}-second"))
        finally:
            run(dev + ["down", "-v", "--force"], wt, env, check=False)
            run(dev + ["down", "-v", "--force"], main_dir, env, check=False)
    t_thin = statistics.median(t for t, _ in thin)
    t_full = statistics.median(t for t, _ in full)
    c_thin, c_full = max(n for _, n in thin), max(n for _, n in full)
    print(f"second instance up --wait: thin {t_thin:.2f} s ({c_thin} containers), "
          f"full {t_full:.2f} s ({c_full} containers), {a.runs} runs", flush=True)
    metric.emit("second instance ready, thin", t_thin, "s", peer="full instance", value=t_full,
                ratio=t_full / t_thin, better="higher")
    metric.emit("second instance ready, thin, absolute", t_thin, "s", better="lower")
    metric.emit("second instance containers, thin", c_thin, "containers", better="lower")
    metric.emit("second instance containers, full", c_full, "containers", better="lower")


if __name__ == "__main__":
    main()
