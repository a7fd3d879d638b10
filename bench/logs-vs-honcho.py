#!/usr/bin/env python3
"""Benchmark: merged-log throughput and peak memory of devstack against honcho (PyPI), with 4
chatty processes, measured in the same run, beside the floor: the same 4 writers piped straight
into `cat` (no tool in between).

    bench/logs-vs-honcho.py [--lines N] [--runs R]

Each of 4 processes prints N lines of 100 bytes as fast as it can, a line per write
(PYTHONUNBUFFERED=1, as devstack runs Python services), then a marker line, then sleeps. The harness reads the tool's merged stdout through a pipe as fast as it can, stops the
clock when all 4 markers have arrived (every line before them has been through the tool), reads
the tool's own peak RSS (VmHWM of its process, not the children's), then stops it. Prints
medians and ratios (honcho / devstack: > 1 means devstack is faster or leaner).
"""
import argparse, os, signal, statistics, subprocess, sys, tempfile, time

import metric

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "BENCH-DONE-MARKER"
WRITER = ("import sys, time\n"
          "line = ('x' * 99) + '\\n'\n"
          "w = sys.stdout.write\n"
          "for _ in range({n}): w(line)\n"
          "print('" + MARK + "', flush=True)\n"
          "time.sleep(3600)\n")


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for l in f:
                if l.startswith("VmHWM:"):
                    return int(l.split()[1])
    except OSError:
        pass
    return 0


def run(cmd, cwd, env):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    seen, total, tail, peak = 0, 0, b"", 0
    while seen < 4:
        chunk = p.stdout.read1(1 << 20)
        if not chunk:
            raise SystemExit(f"{cmd[0]} ended early after {total} bytes")
        total += len(chunk)
        seen += (tail + chunk).count(MARK.encode()) - tail.count(MARK.encode())
        tail = chunk[-64:]
        peak = max(peak, peak_rss_kib(p.pid))
    elapsed = time.monotonic() - t0
    peak = max(peak, peak_rss_kib(p.pid))
    os.killpg(p.pid, signal.SIGINT)
    try:
        p.stdout.read()
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    return elapsed, total, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=250_000, help="lines per process (100 bytes each)")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    # DEVSTACK_BIN measures another build (e.g. the previous release, for before/after numbers).
    devstack = os.environ.get("DEVSTACK_BIN")
    if not devstack:
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
        devstack = os.path.join(ROOT, "target/release/devstack")
    venv = os.path.join(ROOT, "target/bench-venv")
    if not os.path.exists(os.path.join(venv, "bin/honcho")):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin/pip"), "install", "-q", "honcho==2.0.0"], check=True)
    honcho = os.path.join(venv, "bin/honcho")
    work = tempfile.mkdtemp()
    with open(os.path.join(work, "writer.py"), "w") as f:
        f.write(WRITER.format(n=a.lines))
    names = ["alpha", "bravo", "charlie", "delta"]
    with open(os.path.join(work, "stack.yaml"), "w") as f:
        f.write("services:\n" + "".join(f"  {n}:\n    command: [python3, writer.py]\n    watch: false\n" for n in names))
    with open(os.path.join(work, "Procfile"), "w") as f:
        f.write("".join(f"{n}: python3 writer.py\n" for n in names))
    # devstack runs a Python service unbuffered (a line per write, as loggers flush), so the
    # writers are unbuffered under the peer and the floor too, whatever the caller's
    # environment says: the same writers in all three.
    env = dict(os.environ, NO_COLOR="1", XDG_STATE_HOME=os.path.join(work, "state"), PYTHONUNBUFFERED="1")
    floor = ["sh", "-c", "(" + " & ".join(["python3 writer.py"] * 4) + "; wait) | cat"]
    results = {"devstack": [], "honcho": [], "floor": []}
    for i in range(a.runs):
        results["devstack"].append(run([devstack, "-p", "benchlogs", "up", "--no-watch"], work, env))
        results["honcho"].append(run([honcho, "start", "--no-colour"], work, env))
        results["floor"].append(run(floor, work, env))
        d, h, c = results["devstack"][-1], results["honcho"][-1], results["floor"][-1]
        print(f"run {i+1}: devstack {d[0]:.2f}s {d[2]//1024} MiB; honcho {h[0]:.2f}s {h[2]//1024} MiB; floor (cat) {c[0]:.2f}s", file=sys.stderr)
    mb = 4 * a.lines * 100 / 1e6
    print(f"\n4 processes x {a.lines} lines of 100 B ({mb:.0f} MB), median of {a.runs} runs, {os.cpu_count()} cores")
    print(f"{'tool':<9} {'time':>8} {'throughput':>12} {'peak RSS':>10}")
    med = {}
    for tool, rs in results.items():
        t = statistics.median(r[0] for r in rs)
        m = statistics.median(r[2] for r in rs)
        med[tool] = (t, m)
        print(f"{tool:<9} {t:>7.2f}s {mb / t:>8.1f} MB/s {m / 1024:>7.1f} MiB")
    print(f"ratio honcho/devstack: time {med['honcho'][0] / med['devstack'][0]:.2f}, peak memory {med['honcho'][1] / med['devstack'][1]:.2f}")
    print(f"ratio devstack/floor: time {med['devstack'][0] / med['floor'][0]:.2f} (the floor's RSS is a shell's, not comparable)")
    d, h, c = med['devstack'], med['honcho'], med['floor']
    metric.emit(f"log flood {mb:.0f} MB", d[0], "s", "cat floor", c[0], d[0] / c[0], better="lower")
    metric.emit(f"log flood {mb:.0f} MB", d[0], "s", "honcho", h[0], h[0] / d[0])
    metric.emit("log flood peak RSS", d[1] / 1024, "MiB", better="lower")


if __name__ == "__main__":
    main()
