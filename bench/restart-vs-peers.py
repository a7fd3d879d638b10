#!/usr/bin/env python3
"""Benchmark: restart-to-ready, devstack's control verb against the peers, measured in one run.

    bench/restart-vs-peers.py [--runs N]

Container: `devstack restart redis` (against a foreground `devstack up` of one redis:7-alpine
service) and `docker-compose restart redis` (Debian's docker-compose 1.29, same image), each
followed by the same PING poll until PONG; the clock runs from the command to PONG.

Process: `devstack restart app` (a small HTTP app with an http readiness probe) and watchexec
(watchexec-cli from crates.io, `--restart`) restarting the same app when a trigger file is
touched; the clock runs from the command (the touch) until the app answers from a new process.
Both run at once, each its own copy of the app, and their restarts alternate.

Prints medians and the ratios peer/devstack (> 1: devstack is faster). Needs the local images
(scripts/offline-images.sh) and a Docker engine. watchexec is built once into target/bench-tools
(`cargo install watchexec-cli`, several minutes) unless WATCHEXEC points at a binary.
"""
import argparse, os, shutil, socket, statistics, subprocess, sys, tempfile, time, urllib.request

import metric

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVSTACK = os.environ.get("DEVSTACK_BIN") or os.path.join(ROOT, "target/release/devstack")
APP = '''import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
            c.sendall(b"PING\r\n")
            return c.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def until(pred, within=60.0, every=0.002):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    raise SystemExit("timed out")


def answer(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5) as r:
            return r.read().decode()
    except Exception:
        return None


def run(cmd, cwd, env=None):
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def devstack_up(work, project, env):
    p = subprocess.Popen([DEVSTACK, "-p", project, "up", "--no-watch"], cwd=work, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run([DEVSTACK, "-p", project, "wait", "--timeout", "120s"], work, env)
    return p


def devstack_down(p, work, project, env):
    p.send_signal(2)
    p.wait(timeout=60)
    run([DEVSTACK, "-p", project, "down", "-v"], work, env)


def container(runs, env):
    work = tempfile.mkdtemp(prefix="restart-bench-")
    dport, cport = free_port(), free_port()
    with open(os.path.join(work, "stack.yaml"), "w") as f:
        f.write(f'services:\n  redis:\n    image: redis:7-alpine\n    ports: ["{dport}:6379"]\n    ready: {{ redis: {{}} }}\n')
    with open(os.path.join(work, "docker-compose.yml"), "w") as f:
        f.write(f'version: "3.8"\nservices:\n  redis:\n    image: redis:7-alpine\n    ports: ["127.0.0.1:{cport}:6379"]\n')
    out = {"devstack": [], "docker-compose": []}
    project = f"bench-restart-{os.getpid()}"
    p = devstack_up(work, project, env)
    try:
        for _ in range(runs):
            t = time.monotonic()
            run([DEVSTACK, "-p", project, "restart", "redis"], work, env)
            until(lambda: ping(dport))
            out["devstack"].append((time.monotonic() - t) * 1000)
    finally:
        devstack_down(p, work, project, env)
    cproject = f"benchcompose{os.getpid()}"
    run(["docker-compose", "-p", cproject, "up", "-d"], work)
    try:
        until(lambda: ping(cport))
        for _ in range(runs):
            t = time.monotonic()
            run(["docker-compose", "-p", cproject, "restart", "redis"], work)
            until(lambda: ping(cport))
            out["docker-compose"].append((time.monotonic() - t) * 1000)
    finally:
        run(["docker-compose", "-p", cproject, "down", "-v"], work)
    shutil.rmtree(work, ignore_errors=True)
    return out


def watchexec_bin():
    w = os.environ.get("WATCHEXEC") or shutil.which("watchexec")
    if w:
        return w
    tools = os.path.join(ROOT, "target/bench-tools")
    w = os.path.join(tools, "bin/watchexec")
    if not os.path.exists(w):
        subprocess.run(["cargo", "install", "--locked", "watchexec-cli", "--root", tools], check=True)
    return w


def process(runs, env):
    """Both tools run side by side, each its own copy of the app on its own port, and their
    restarts alternate, each after the same pause: whatever the machine is doing (the engine
    still cleaning up after the container case, a slower minute) falls on both alike."""
    work = tempfile.mkdtemp(prefix="restart-bench-")
    dport = free_port()
    wport = free_port()
    while wport == dport:
        wport = free_port()
    with open(os.path.join(work, "app.py"), "w") as f:
        f.write(APP)
    with open(os.path.join(work, "stack.yaml"), "w") as f:
        f.write(f'services:\n  app:\n    command: python3 app.py\n    environment: {{ PORT: "{dport}" }}\n    ports: ["{dport}"]\n    ready: {{ http: "http://127.0.0.1:{dport}/" }}\n')
    out = {"devstack": [], "watchexec": []}
    project = f"bench-restart-p{os.getpid()}"
    trigger = os.path.join(work, "trigger")
    open(trigger, "w").close()
    watchexec = watchexec_bin()  # built first when missing: minutes, before anything runs
    p = devstack_up(work, project, env)
    try:
        w = subprocess.Popen([watchexec, "--restart", "--debounce", "1ms", "--watch", trigger, "--", "python3", "app.py"],
                             cwd=work, env=dict(env, PORT=str(wport)), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            until(lambda: answer(wport) is not None)

            def by_devstack():
                old = answer(dport)
                t = time.monotonic()
                run([DEVSTACK, "-p", project, "restart", "app"], work, env)
                until(lambda: answer(dport) not in (None, old))
                out["devstack"].append((time.monotonic() - t) * 1000)

            def by_watchexec(i):
                old = answer(wport)
                t = time.monotonic()
                with open(trigger, "w") as f:
                    f.write(str(i))
                until(lambda: answer(wport) not in (None, old))
                out["watchexec"].append((time.monotonic() - t) * 1000)

            for i in range(runs):
                # Each goes first every other round, after the same pause (not measured).
                turns = [by_devstack, lambda: by_watchexec(i)]
                for turn in turns if i % 2 == 0 else reversed(turns):
                    time.sleep(0.3)
                    turn()
        finally:
            try:
                os.killpg(w.pid, 15)
            except ProcessLookupError:
                pass
            w.wait(timeout=30)
    finally:
        devstack_down(p, work, project, env)
    shutil.rmtree(work, ignore_errors=True)
    return out


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--runs", type=int, default=15)
    args = a.parse_args()
    if not os.path.exists(DEVSTACK):
        run(["cargo", "build", "--release"], ROOT)
    env = dict(os.environ, NO_COLOR="1", XDG_STATE_HOME=tempfile.mkdtemp(prefix="restart-bench-state-"))
    print(f"restart-to-ready, {args.runs} runs each, median (min-max):")
    for kind, fn, peer in (("container", container, "docker-compose"), ("process", process, "watchexec")):
        r = fn(args.runs, env)
        d, p = statistics.median(r["devstack"]), statistics.median(r[peer])
        for tool in ("devstack", peer):
            xs = r[tool]
            print(f"  {kind:9} {tool:15} {statistics.median(xs):7.0f} ms  ({min(xs):.0f}-{max(xs):.0f})")
        print(f"  {kind:9} ratio {peer}/devstack = {p / d:.2f}")
        metric.emit(f"{kind} restart→ready", d, "ms", peer, p, p / d)


if __name__ == "__main__":
    sys.exit(main())
