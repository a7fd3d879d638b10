#!/usr/bin/env python3
"""Benchmark: change-to-ready latency of hot reload, devstack against watchexec (watchexec-cli on
crates.io), on the same app at the same debounce, measured in the same run.

    bench/reload-vs-watchexec.py [--edits N] [--debounce-ms D]

The app is a small HTTP server that answers with a token read from its own source. For each edit
the harness writes a new token into the source and polls the app until the answer carries it:
the time from the write to that answer is the change-to-ready latency (debounce + stop of the old
instance + start of the new one + its first answer). Both tools run at once, each its own copy of
the app in a folder of its own on a port of its own, and their edits alternate (each goes first
every other round). Prints medians and the ratio (watchexec / devstack: > 1 means devstack
reloads faster).

watchexec is built once into target/bench-tools (`cargo install watchexec-cli`, several minutes)
unless WATCHEXEC points at a binary.
"""
import argparse, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

import metric

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = '''import http.server, os
TOKEN = "{token}"
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = TOKEN.encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def answer(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5) as r:
            return r.read().decode()
    except Exception:
        return None


def wait_for(port, token, deadline):
    while time.monotonic() < deadline:
        if answer(port) == token:
            return True
        time.sleep(0.002)
    return False


def start(cmd, work, port, env):
    """Writes the app with token t0 into `work`, starts `cmd` there, waits for its answer."""
    with open(os.path.join(work, "app.py"), "w") as f:
        f.write(APP.format(token="t0"))
    p = subprocess.Popen(cmd, cwd=work, env=dict(env, PORT=str(port)), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    if not wait_for(port, "t0", time.monotonic() + 60):
        stop(p)
        raise SystemExit(f"{cmd[0]}: the app never answered")
    return p


def stop(p):
    os.killpg(p.pid, signal.SIGINT)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); p.wait()


def edit(work, port, i, name):
    """Writes token t`i` into the app and times until it answers with it (ms)."""
    token = f"t{i}"
    t0 = time.monotonic()
    with open(os.path.join(work, "app.py"), "w") as f:
        f.write(APP.format(token=token))
    if not wait_for(port, token, t0 + 30):
        raise SystemExit(f"{name}: edit {i} never became ready")
    return (time.monotonic() - t0) * 1000


def measure(tools, edits, env):
    """Both tools run at once, each its own copy of the app in its own folder on its own port,
    and their edits alternate, each after the same pause, each going first every other round:
    whatever the machine is doing meanwhile falls on both alike."""
    procs = {}
    lat = {name: [] for name in tools}
    try:
        for name, (cmd, work, port) in tools.items():
            procs[name] = start(cmd, work, port, env)
        order = list(tools)
        for i in range(1, edits + 1):
            for name in order if i % 2 else reversed(order):
                time.sleep(0.5)  # let both settle; not part of any measurement
                _, work, port = tools[name]
                lat[name].append(edit(work, port, i, name))
        return lat
    finally:
        for p in procs.values():
            try:
                stop(p)
            except Exception as e:  # the other still gets stopped
                print(f"could not stop {p.args[0]}: {e}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=15)
    ap.add_argument("--debounce-ms", type=int, default=100)
    a = ap.parse_args()
    # DEVSTACK_BIN measures another build (e.g. the previous release, for before/after numbers).
    devstack = os.environ.get("DEVSTACK_BIN")
    if not devstack:
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
        devstack = os.path.join(ROOT, "target/release/devstack")
    watchexec = os.environ.get("WATCHEXEC") or shutil.which("watchexec")
    if not watchexec:
        tools = os.path.join(ROOT, "target/bench-tools")
        watchexec = os.path.join(tools, "bin/watchexec")
        if not os.path.exists(watchexec):
            subprocess.run(["cargo", "install", "--locked", "watchexec-cli", "--root", tools], check=True)
    dwork, wwork = tempfile.mkdtemp(), tempfile.mkdtemp()
    dport = free_port()
    wport = free_port()
    while wport == dport:
        wport = free_port()
    d = a.debounce_ms
    with open(os.path.join(dwork, "stack.yaml"), "w") as f:
        f.write(f"services:\n  app:\n    command: python3 app.py\n    environment: {{ PORT: \"{dport}\" }}\n    watch: {{ debounce: {d}ms }}\n")
    # devstack's state (log files) lives outside the watched folder, as it does by default.
    state = tempfile.mkdtemp()
    env = dict(os.environ, NO_COLOR="1", XDG_STATE_HOME=state)
    try:
        results = measure({
            # No dashboard: nothing of it is measured, and its free port could take watchexec's.
            "devstack": ([devstack, "-p", "benchreload", "up", "--no-dashboard"], dwork, dport),
            "watchexec": ([watchexec, "--restart", "--debounce", f"{d}ms", "--watch", wwork, "--", "python3", "app.py"], wwork, wport),
        }, a.edits, env)
    finally:
        for folder in (dwork, wwork, state):
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\nchange-to-ready latency, {a.edits} edits each, debounce {d} ms, {os.cpu_count()} cores")
    print(f"{'tool':<10} {'median':>9} {'min':>8} {'max':>8}")
    for tool, lat in results.items():
        print(f"{tool:<10} {statistics.median(lat):>7.0f}ms {min(lat):>6.0f}ms {max(lat):>6.0f}ms")
    d, w = statistics.median(results['devstack']), statistics.median(results['watchexec'])
    print(f"ratio watchexec/devstack (median): {w / d:.2f}")
    metric.emit("reload edit→ready", d, "ms", "watchexec", w, w / d)


if __name__ == "__main__":
    main()
