#!/usr/bin/env python3
"""Benchmark: an edit of the stack file while the stack runs, devstack against docker-compose.

    bench/apply-vs-compose.py [--runs N]

The stack: the reference stack's infrastructure (postgres, redis, qdrant, zookeeper and, when its
image is there, kafka; the local images of scripts/offline-images.sh) plus `app`, a small HTTP
server that answers with the value of its `MARK` variable. Each run changes `MARK` in the file:

- devstack: `devstack up` runs in the foreground and applies the saved file by itself; the clock
  runs from the write of the file until `app` answers with the new value.
- docker-compose (Debian's 1.29, same images, `app` in python:3.11-slim): the clock runs from the
  write of the file, through `docker-compose up -d` (what a Compose user runs after an edit),
  until `app` answers with the new value.
- devstack, `app` as a native process (no peer: Compose has none): the same edit.

Then the no-op save (a comment added, keys reordered): how many services each tool restarted or
recreated (read from `devstack ps --json` restarts and epochs, and from the container ids), and
how long each took to settle (devstack: until its `config_applied` event; compose: `up -d`).

Prints medians and the ratio compose/devstack (> 1: devstack is faster). Needs a Docker engine,
the local images and docker-compose; builds the release binary unless DEVSTACK_BIN is set.
"""
import argparse, json, os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

import metric
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVSTACK = os.environ.get("DEVSTACK_BIN") or os.path.join(ROOT, "target/release/devstack")
APP = (
    "import http.server, os, signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        b = os.environ.get('MARK', '').encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"
)


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def answer(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5) as r:
            return r.read().decode()
    except Exception:
        return None


def until(cond, within=120.0, every=0.005):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise SystemExit("timed out")


def have_image(image):
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def infra(ports, kafka):
    """The infrastructure as both tools run it (Compose syntax, which devstack reads too)."""
    s = f"""  postgres:
    image: postgres:15
    environment: {{ POSTGRES_USER: user, POSTGRES_PASSWORD: pass, POSTGRES_DB: ensurestudy }}
    ports: ["127.0.0.1:{ports['pg']}:5432"]
  redis:
    image: redis:7-alpine
    ports: ["127.0.0.1:{ports['rd']}:6379"]
  qdrant:
    image: qdrant/qdrant:latest
    ports: ["127.0.0.1:{ports['qd']}:6333"]
  zookeeper:
    image: confluentinc/cp-zookeeper:latest
    environment: {{ ZOOKEEPER_CLIENT_PORT: "2181" }}
    ports: ["127.0.0.1:{ports['zk']}:2181"]
"""
    if kafka:
        s += f"""  kafka:
    image: confluentinc/cp-kafka:latest
    depends_on: [zookeeper]
    environment:
      KAFKA_BROKER_ID: "1"
      KAFKA_ZOOKEEPER_CONNECT: zookeeper:2181
      KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka:29092,PLAINTEXT_HOST://127.0.0.1:{ports['kf']}
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT
    ports: ["127.0.0.1:{ports['kf']}:9092"]
"""
    return s


def app_container(port, mark):
    return f"""  app:
    image: python:3.11-slim
    command: ["python3", "-c", {json.dumps(APP)}]
    environment: {{ PORT: "{port}", MARK: {mark} }}
    ports: ["127.0.0.1:{port}:{port}"]
"""


def app_process(port, mark):
    return f"""  app:
    command: ["python3", "-c", {json.dumps(APP.replace("$", "$$"))}]
    environment: {{ PORT: "{port}", MARK: {mark} }}
    ready: {{ http: "http://127.0.0.1:{port}/" }}
"""


class Devstack:
    def __init__(self, work, project, text):
        self.work, self.project = work, project
        self.file = os.path.join(work, "stack.yaml")
        self.state = tempfile.mkdtemp()
        self.env = dict(os.environ, XDG_STATE_HOME=self.state, NO_COLOR="1")
        with open(self.file, "w") as f:
            f.write(text)
        self.proc = subprocess.Popen(
            [DEVSTACK, "-p", project, "up", "--json", "--no-watch", "--no-tty", "--no-dashboard"],
            cwd=work, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.applied = []
        self.lock = threading.Condition()
        threading.Thread(target=self.read, daemon=True).start()
        self.run("wait", "--timeout", "300s")

    def read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line).get("event") or {}
            except ValueError:
                continue
            if ev.get("type") == "config_applied":
                with self.lock:
                    self.applied.append((time.monotonic(), ev["changes"]))
                    self.lock.notify_all()

    def run(self, *args):
        out = subprocess.run([DEVSTACK, "-p", self.project, *args], cwd=self.work, env=self.env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"devstack {' '.join(args)}: {out.stderr}")
        return out.stdout

    def ps(self):
        return {r["service"]: r for r in json.loads(self.run("ps", "--json"))}

    def next_plan(self, after):
        with self.lock:
            self.lock.wait_for(lambda: any(t > after for t, _ in self.applied), timeout=60)
            return next((t, c) for t, c in self.applied if t > after)

    def stop(self):
        self.proc.send_signal(2)
        self.proc.wait(timeout=120)
        subprocess.run([DEVSTACK, "-p", self.project, "down", "-v"], cwd=self.work, env=self.env,
                       capture_output=True)
        shutil.rmtree(self.state, ignore_errors=True)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def edit_runs(path, template, port, runs, settle=None):
    """Each run writes MARK=vN and waits for the answer; `settle` runs right after the write."""
    times = []
    for i in range(runs):
        mark = f"m{i}x{os.getpid()}"
        t0 = time.monotonic()
        write(path, template(mark))
        if settle:
            settle()
        until(lambda: answer(port) == mark)
        times.append((time.monotonic() - t0) * 1000)
        time.sleep(0.3)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    if not shutil.which("docker-compose"):
        sys.exit("needs docker-compose (apt-get install docker-compose)")
    if "DEVSTACK_BIN" not in os.environ:
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    kafka = have_image("confluentinc/cp-kafka:latest")
    ports = {k: free_port() for k in ["pg", "rd", "qd", "zk", "kf", "app"]}
    port = ports["app"]
    stack = lambda app: (lambda mark: "services:\n" + infra(ports, kafka) + app(port, mark))
    results = {}

    # devstack, app as a container.
    work = tempfile.mkdtemp()
    ds = Devstack(work, f"benchapply{os.getpid()}", stack(app_container)('"start"'))
    until(lambda: answer(port) == "start")
    results["devstack container"] = edit_runs(ds.file, lambda m: stack(app_container)(f'"{m}"'), port, args.runs)
    # The no-op save: a comment and the keys of `app` in another order.
    text = stack(app_container)('"last"')
    write(ds.file, text)
    until(lambda: answer(port) == "last")
    time.sleep(1)
    before = ds.ps()
    lines = text.split("\n")
    i = next(n for n, l in enumerate(lines) if l.startswith("    environment: { PORT"))
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    t0 = time.monotonic()
    write(ds.file, "# saved again\n" + "\n".join(lines))
    t1, changes = ds.next_plan(t0)
    after = ds.ps()
    bounced = [s for s in before if after[s]["epoch"] != before[s]["epoch"]]
    results["devstack no-op"] = ((t1 - t0) * 1000, [c["action"] for c in changes], bounced)
    ds.stop()
    shutil.rmtree(work, ignore_errors=True)

    # devstack, app as a native process.
    work = tempfile.mkdtemp()
    ds = Devstack(work, f"benchapplyp{os.getpid()}", stack(app_process)('"start"'))
    until(lambda: answer(port) == "start")
    results["devstack process"] = edit_runs(ds.file, lambda m: stack(app_process)(f'"{m}"'), port, args.runs)
    ds.stop()
    shutil.rmtree(work, ignore_errors=True)

    # docker-compose, app as a container.
    work = tempfile.mkdtemp()
    project = f"benchapplyc{os.getpid()}"
    file = os.path.join(work, "docker-compose.yml")
    compose = lambda mark: 'version: "2.4"\n' + stack(app_container)(mark)
    dc = lambda *a: subprocess.run(["docker-compose", "-p", project, "-f", file, *a], cwd=work,
                                   capture_output=True, text=True, check=True)
    try:
        write(file, compose('"start"'))
        dc("up", "-d")
        until(lambda: answer(port) == "start", within=300)
        results["compose container"] = edit_runs(
            file, lambda m: compose(f'"{m}"'), port, args.runs, settle=lambda: dc("up", "-d"))
        ids = lambda: dc("ps", "-q").stdout.split()
        before = sorted(ids())
        t0 = time.monotonic()
        write(file, "# saved again\n" + open(file).read())
        dc("up", "-d")
        t = (time.monotonic() - t0) * 1000
        results["compose no-op"] = (t, len(set(before) - set(ids())))
    finally:
        subprocess.run(["docker-compose", "-p", project, "-f", file, "down", "-v"], cwd=work,
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    med = lambda xs: statistics.median(xs)
    d, c, p = (results["devstack container"], results["compose container"], results["devstack process"])
    print(f"machine: {os.cpu_count()} cores; infrastructure: {'5' if kafka else '4 (no kafka image)'} services + app; {args.runs} runs each")
    print(f"edit→ready, app container:  devstack {med(d):.0f} ms (range {min(d):.0f}–{max(d):.0f}), "
          f"docker-compose up -d {med(c):.0f} ms (range {min(c):.0f}–{max(c):.0f}), ratio {med(c) / med(d):.2f}")
    print(f"edit→ready, app process:    devstack {med(p):.0f} ms (range {min(p):.0f}–{max(p):.0f}) (no peer)")
    t, actions, bounced = results["devstack no-op"]
    print(f"no-op save: devstack planned in {t:.0f} ms, {len(bounced)} restarted "
          f"({sum(a == 'unchanged' for a in actions)}/{len(actions)} unchanged); "
          f"docker-compose up -d {results['compose no-op'][0]:.0f} ms, {results['compose no-op'][1]} recreated")
    metric.emit("stack file edit→ready, container", med(d), "ms", "docker-compose", med(c), med(c) / med(d))
    metric.emit("stack file no-op save, services restarted", len(bounced), "services", better="lower")


if __name__ == "__main__":
    main()
