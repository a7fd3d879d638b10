#!/usr/bin/env python3
"""Benchmark: `devstack logs --level error` over 100,000 JSON lines (goal: under 150 ms; pitchfork
publishes 135 ms for the same query).

    bench/logs-query.py [--lines N] [--runs R] [--direct]

The lines get into the files through a real `devstack up` run: one process prints N pino/zap-
style JSON lines (70% info, 15% debug, 10% warn, 5% error, about 170 bytes each) and sleeps; the
harness waits until the service's log file holds them all, stops the run, then times the query
`devstack logs --level error` (its whole output read through a pipe) R times and prints the
median, min and max. `--direct` writes the file in the on-disk format instead (no `up`), for a
quick figure. DEVSTACK_BIN picks the build measured; otherwise a release build is made.
"""
import argparse, json, os, random, signal, statistics, subprocess, sys, tempfile, time

import metric

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVELS = [("info", 70), ("debug", 15), ("warn", 10), ("error", 5)]
PINO = {"debug": 20, "info": 30, "warn": 40, "error": 50}
WRITER = """import json, random, sys, time
random.seed(7)
levels = {levels!r}
pino = {pino!r}
w = sys.stdout.write
for i in range({n}):
    lv = random.choices([l for l, _ in levels], [p for _, p in levels])[0]
    if i % 2:
        w(json.dumps({{"level": pino[lv], "time": 1704110400000 + i, "pid": 4242, "hostname": "web-1",
                      "req": i, "route": "/api/items/%d" % (i % 97), "msg": "handled request %d" % i}}) + "\\n")
    else:
        w(json.dumps({{"level": lv, "ts": 1704110400.0 + i / 1000, "caller": "api/handler.go:42",
                      "msg": "handled request %d" % i, "status": 200 if lv != "error" else 500}}) + "\\n")
sys.stdout.flush()
time.sleep(3600)
"""


def devstack_bin():
    b = os.environ.get("DEVSTACK_BIN")
    if b:
        return b
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release/devstack")


def lines_in(path):
    """Lines of a service's file and its rotated predecessor (files rotate at 20 MB)."""
    n = 0
    for p in (path + ".1", path):
        try:
            with open(p, "rb") as f:
                n += f.read().count(b"\n")
        except OSError:
            pass
    return n


def fill_via_up(devstack, work, env, project, n, log):
    with open(os.path.join(work, "writer.py"), "w") as f:
        f.write(WRITER.format(levels=LEVELS, pino=PINO, n=n))
    with open(os.path.join(work, "stack.yaml"), "w") as f:
        f.write("services:\n  api:\n    command: [python3, -u, writer.py]\n    watch: false\n")
    p = subprocess.Popen([devstack, "-p", project, "up", "--no-dashboard"], cwd=work, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    # The files also hold the run's boundary (once per file); every line is in once they have
    # n + 1 lines or more.
    while lines_in(log) < n + 1:
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit(f"the log file has {lines_in(log)} lines, not {n + 1}")
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)
    p.wait(timeout=60)


def fill_direct(work, log, n):
    """The on-disk format as devstack writes it: a run boundary, then one record per line."""
    with open(os.path.join(work, "stack.yaml"), "w") as f:
        f.write("services:\n  api:\n    command: [sleep, '3600']\n")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    t0 = int(time.time() * 1000)
    with open(os.path.join(os.path.dirname(log), "runs"), "w") as f:
        f.write(json.dumps({"run": 1, "t": t0}) + "\n")
    rnd = random.Random(7)
    with open(log, "w") as f:
        f.write(json.dumps({"run": 1, "t": t0, "service": "api", "stream": "run", "text": "run 1"},
                           separators=(",", ":")) + "\n")
        for i in range(n):
            lv = rnd.choices([l for l, _ in LEVELS], [p for _, p in LEVELS])[0]
            text = json.dumps({"level": lv, "ts": 1704110400.0 + i / 1000, "caller": "api/handler.go:42",
                               "msg": "handled request %d" % i, "status": 200 if lv != "error" else 500})
            f.write(json.dumps({"t": t0 + i // 10, "service": "api", "stream": "stdout", "level": lv,
                                "text": text}, separators=(",", ":")) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--direct", action="store_true", help="write the file directly, no `up`")
    a = ap.parse_args()
    devstack = devstack_bin()
    work = tempfile.mkdtemp()
    state = tempfile.mkdtemp()
    project = "logsquery"
    env = dict(os.environ, XDG_STATE_HOME=state, NO_COLOR="1")
    log = os.path.join(state, "devstack", project, "logs", "api.log")
    if a.direct:
        fill_direct(work, log, a.lines)
    else:
        fill_via_up(devstack, work, env, project, a.lines, log)
    size = sum(os.path.getsize(p) for p in (log, log + ".1") if os.path.exists(p))
    cmd = [devstack, "-p", project, "logs", "--level", "error", "api"]
    times, shown = [], 0
    for i in range(a.runs + 1):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(out.stderr.decode())
        shown = out.stdout.count(b"\n")
        if i:  # the first run warms the page cache
            times.append(dt * 1000)
    med = statistics.median(times)
    print(f"file: {a.lines} JSON lines, {size / 1e6:.1f} MB ({'direct' if a.direct else 'through devstack up'}); "
          f"{shown} lines of level error or above")
    print(f"logs --level error: median {med:.0f} ms (min {min(times):.0f}, max {max(times):.0f}) over {a.runs} runs, "
          f"{os.cpu_count()} cores; goal < 150 ms: {'ok' if med < 150 else 'SHORT'}")
    metric.emit(f"logs --level error, {a.lines} JSON lines", med, "ms", better="lower")


if __name__ == "__main__":
    main()
