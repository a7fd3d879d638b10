#!/usr/bin/env python3
"""Benchmark: save and restore of a PostgreSQL volume holding ~100 MB of data, devstack's
`snapshot save`/`restore` against the plain copy a user would write, measured in one run.

    bench/snapshot-vs-docker.py [--runs N] [--mb MB]

Setup: one postgres:15 service (the local image from scripts/offline-images.sh) with a named
volume, brought up with `devstack up --wait`, filled with MB of rows (`repeat(md5(..))` text, so
it compresses about as real data does), then `devstack down` (volume kept): both sides copy a
volume that nothing runs on.

devstack: `devstack snapshot save bench` (gzip level 1, through the Docker Engine API) and
`devstack snapshot restore bench`.

peer: the commands a user writes by hand, with the same image (there is no busybox here):
  save:    docker run --rm -v VOL:/v -v $PWD:/out postgres:15 tar -czf /out/pg.tgz -C /v .
  restore: docker run --rm -v VOL:/v -v $PWD:/out postgres:15 sh -c 'find /v -mindepth 1 -delete && tar -xzf /out/pg.tgz -C /v'

Then restore-to-ready: `devstack up --wait` after each restore, until PostgreSQL takes a real
login, and a check that the row count came back. Prints medians and the ratios peer/devstack
(> 1: devstack is faster). Needs a Docker engine, the local images and a release build
(`cargo build --release`; DEVSTACK_BIN overrides the binary).
"""
import argparse, os, socket, statistics, subprocess, sys, tempfile, time

import metric

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVSTACK = os.environ.get("DEVSTACK_BIN") or os.path.join(ROOT, "target/release/devstack")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def run(cmd, cwd, **kw):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout


def timed(cmd, cwd):
    t = time.monotonic()
    run(cmd, cwd)
    return time.monotonic() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=100)
    a = ap.parse_args()
    port = free_port()
    project = f"dstest-bench-snap-{os.getpid()}"
    vol = f"{project}_pgdata"
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "stack.yaml"), "w").write(
            "services:\n  db:\n    image: postgres:15\n"
            "    environment: { POSTGRES_USER: user, POSTGRES_PASSWORD: pass, POSTGRES_DB: app }\n"
            f"    ports: [\"{port}:5432\"]\n    volumes: [\"pgdata:/var/lib/postgresql/data\"]\n"
            "    ready: { postgres: { user: user, password: pass, database: app }, timeout: 120s }\n"
            "volumes: { pgdata: {} }\n")
        ds = [DEVSTACK, "-p", project]
        env = dict(os.environ, PGPASSWORD="pass")
        psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "user", "-d", "app", "-tAc"]
        try:
            run(ds + ["up", "--wait"], d)
            rows = a.mb * 1024 * 1024 // 320
            run(psql + [f"CREATE TABLE t AS SELECT i, repeat(md5(i::text), 8) AS s FROM generate_series(1, {rows}) i"], d, env=env)
            size = run(psql + ["SELECT pg_database_size('app')"], d, env=env).strip()
            count = run(psql + ["SELECT count(*) FROM t"], d, env=env).strip()
            run(ds + ["down"], d)
            print(f"database: {int(size) / 2**20:.0f} MiB, {count} rows; volume {vol}; {a.runs} runs each")
            res = {k: [] for k in ["ds_save", "ds_restore", "ds_ready", "peer_save", "peer_restore", "peer_ready"]}
            peer = ["docker", "run", "--rm", "-v", f"{vol}:/v", "-v", f"{d}:/out", "postgres:15"]
            for _ in range(a.runs):
                res["ds_save"].append(timed(ds + ["snapshot", "save", "bench"], d))
                res["ds_restore"].append(timed(ds + ["snapshot", "restore", "bench"], d))
                res["ds_ready"].append(timed(ds + ["up", "--wait"], d))
                assert run(psql + ["SELECT count(*) FROM t"], d, env=env).strip() == count
                run(ds + ["down"], d)
                res["peer_save"].append(timed(peer + ["tar", "-czf", "/out/pg.tgz", "-C", "/v", "."], d))
                res["peer_restore"].append(timed(peer + ["sh", "-c", "find /v -mindepth 1 -delete && tar -xzf /out/pg.tgz -C /v"], d))
                res["peer_ready"].append(timed(ds + ["up", "--wait"], d))
                assert run(psql + ["SELECT count(*) FROM t"], d, env=env).strip() == count
                run(ds + ["down"], d)
            snap = os.path.expanduser(f"~/.local/state/devstack/{project}/snapshots/bench")
            ds_bytes = sum(os.path.getsize(os.path.join(snap, f)) for f in os.listdir(snap) if f.endswith(".tar.gz"))
            peer_bytes = os.path.getsize(os.path.join(d, "pg.tgz"))
            med = {k: statistics.median(v) for k, v in res.items()}
            print(f"{'':24}{'devstack':>10}{'docker run tar':>16}{'ratio':>8}")
            for label, k in [("save", "save"), ("restore", "restore"), ("up --wait after restore", "ready")]:
                ds_t, peer_t = med[f"ds_{k}"], med[f"peer_{k}"]
                print(f"{label:24}{ds_t:>9.2f}s{peer_t:>15.2f}s{peer_t / ds_t:>7.2f}x")
                metric.emit(f"snapshot {label}, {a.mb} MB PostgreSQL", ds_t, "s", "docker run tar", peer_t, peer_t / ds_t)
            print(f"{'file size':24}{ds_bytes / 2**20:>8.1f}MiB{peer_bytes / 2**20:>13.1f}MiB")
        finally:
            subprocess.run(ds + ["down", "-v"], cwd=d, capture_output=True)
            subprocess.run(["rm", "-rf", os.path.expanduser(f"~/.local/state/devstack/{project}")])


if __name__ == "__main__":
    main()
