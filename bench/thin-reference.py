#!/usr/bin/env python3
"""Benchmark: a second instance of the reference stack (the repository's own stack.yaml) ready
beside the running main one, as a person gets it: `git worktree add`, then `devstack up --wait`
in the new worktree. Thin: the reference stack declares `instances: { share: [postgres, redis,
qdrant, kafka] }`, so the second instance runs its four apps (Flask, Celery, FastAPI, Node) and
the `venv` task on the main instance's infrastructure, with no container of its own.

    bench/thin-reference.py [--runs N]

Every run is a new worktree (a new instance: no task record, no database of its own yet), ended
with `down -v` (its database dropped, its Redis index flushed) and `git worktree remove`. The
main instance is the one running in this checkout, or started here (`up --wait`) and stopped at
the end with `down` (its volumes are kept). Prints the median time to ready, the containers the
second instance added, and where the time went in the median run: until the first app started
(the main instance checked, the database copied with TEMPLATE, the prefixes listed), and each
app's own start (its `▸ ready in`). The target: under 3 s with no extra container.

Needs the machine the README's first command prepared (images, the example's virtualenv) and a
release build (`cargo build --release`; DEVSTACK_BIN overrides the binary).
"""
import argparse, os, re, shutil, statistics, subprocess, sys, tempfile, time

import metric

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVSTACK = os.environ.get("DEVSTACK_BIN") or os.path.join(ROOT, "target/release/devstack")
VENV = os.path.join(ROOT, "examples/ensurestudy/.venv")
MAIN = "ensurestudy"
APPS = ("core-service", "celery-worker", "ai-service", "frontend")


def run(cmd, cwd, check=True):
    env = dict(os.environ, NO_COLOR="1")
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r


def running_containers():
    out = subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True).stdout
    return len(out.split())


def main_runs():
    r = run([DEVSTACK, "ps", "--json"], ROOT, check=False)
    return r.returncode == 0 and '"ready"' in r.stdout


def state_home():
    return os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")


def one(i, tmp):
    name = f"bench-thin-{os.getpid()}-{i}"
    wt = os.path.join(tmp, name)
    run(["git", "worktree", "add", "-q", "--detach", wt, "HEAD"], ROOT)
    try:
        # The virtualenv is not in git; a person's worktree would make its own (the `venv` task).
        os.symlink(VENV, os.path.join(wt, "examples/ensurestudy/.venv"))
        before = running_containers()
        wall, t = time.time(), time.monotonic()
        r = run([DEVSTACK, "up", "--wait", "--no-dashboard"], wt)
        took = time.monotonic() - t
        added = running_containers() - before
        run([DEVSTACK, "down", "-v"], wt)
        return took, added, (wall, r.stderr)
    finally:
        run(["git", "worktree", "remove", "--force", wt], ROOT, check=False)
        project = f"{MAIN}-{name}"
        shutil.rmtree(os.path.join(state_home(), "devstack", project), ignore_errors=True)


def breakdown(wall, log):
    """From `up --wait`'s log (local clock times): seconds from the command (`wall`) to the first
    app's start, and each app's own `ready in`."""
    stamp = lambda l: sum(float(x) * m for x, m in zip(l[:12].split(":"), (3600, 60, 1)))
    lt = time.localtime(wall)
    began = lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + (wall % 1)
    lines = [l for l in log.splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d{3} ", l)]
    started = [stamp(l) for l in lines if "▸ started" in l and any(f" {a} " in l for a in APPS)]
    own = {}
    for l in lines:
        m = re.search(r" (\S+)\s+▸ ready in (\d+) ms", l)
        if m and m.group(1) in APPS:
            own[m.group(1)] = int(m.group(2))
    first = min(started) - began if started else None
    return first, own


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    started_main = not main_runs()
    if started_main:
        run([DEVSTACK, "up", "--wait", "--no-dashboard"], ROOT)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="thin-ref-") as tmp:
            for i in range(a.runs):
                results.append(one(i, tmp))
    finally:
        if started_main:
            run([DEVSTACK, "down"], ROOT, check=False)
    times = [t for t, _, _ in results]
    median = statistics.median(times)
    added = max(n for _, n, _ in results)
    _, _, log = min(results, key=lambda r: abs(r[0] - median))
    first, own = breakdown(*log)
    print(f"reference stack, second instance (new worktree) up --wait: median {median:.2f} s "
          f"({min(times):.2f}-{max(times):.2f}), {added} containers added, {a.runs} runs")
    if first is not None:
        print(f"  in the median run: {first:.2f} s until the first app started (the command, the main instance "
              f"checked, the shares made, the venv task), then each app's own start: "
              + ", ".join(f"{s} {ms} ms" for s, ms in sorted(own.items())), flush=True)
    metric.emit("reference stack second instance ready, thin", median, "s", better="lower")
    metric.emit("reference stack second instance containers, thin", added, "containers",
                better="lower")


if __name__ == "__main__":
    main()
