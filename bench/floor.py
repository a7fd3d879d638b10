#!/usr/bin/env python3
"""The critical-path floor for bench/up-vs-compose.sh: each infrastructure service started alone
(`docker run`, then `docker start` of the stopped container for the warm case) and probed from
the host every 5 ms with the same protocol check devstack uses, no orchestrator involved. The
floor of the stack is its longest dependency chain (zookeeper then kafka) or its slowest lone
service, whichever is longer.

    bench/floor.py CONFIG_JSON SERVICE...     prints {"cold": ms, "warm": ms, "cold_net": ms,
                                              "warm_net": ms, "per_service": {...},
                                              "per_service_net": {...}}

It measures each service twice: on Docker's default bridge, and alone on a network of its own
made with `docker network create` (as Compose and devstack run a stack, so that services reach
each other by name), where the engine also sets up its embedded DNS at every start (a dozen
`iptables` runs in the container's network namespace on Docker 20.10) and the default bridge
does not. The second is printed as "cold_net" and "warm_net".

CONFIG_JSON is `devstack config --json --show-secrets` of the stack with its benchmark ports.
"""
import json, os, socket, struct, subprocess, sys, time, urllib.request

POLL = 0.005
TIMEOUT = 180


def probe(kind, spec, port):
    try:
        if kind == "redis":
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        if kind == "zookeeper":
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"ruok")
                return s.recv(16) == b"imok"
        if kind == "qdrant":
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                return r.status == 200
        if kind == "kafka":
            client = b"floor"
            body = struct.pack(">hhih", 18, 0, 7, len(client)) + client
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(struct.pack(">i", len(body)) + body)
                head = s.recv(8)
                return len(head) == 8 and struct.unpack(">ii", head)[1] == 7
        if kind == "postgres":
            env = dict(os.environ, PGPASSWORD=spec["password"], PGCONNECT_TIMEOUT="1")
            r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", spec["user"],
                                "-d", spec["database"], "-tAc", "select 1"],
                               env=env, capture_output=True)
            return r.returncode == 0
    except (OSError, ValueError):
        return False
    raise SystemExit(f"no floor probe for `{kind}`")


def until_ready(kind, spec, port, t0):
    while time.monotonic() - t0 < TIMEOUT:
        if probe(kind, spec, port):
            return (time.monotonic() - t0) * 1000
        time.sleep(POLL)
    raise SystemExit(f"{kind} not ready within {TIMEOUT} s")


def lone(name, svc, network=None):
    """`name` started alone (cold: `docker run`; warm: `docker start` of it stopped): ms to ready."""
    (kind, spec), = svc["ready"]["probe"].items()
    host_ip, host_port, cport = svc["ports"][0].split(":")
    cname = f"devstack-floor-{name}"
    subprocess.run(["docker", "rm", "-f", cname], capture_output=True)
    args = ["docker", "run", "-d", "--name", cname, "-p", f"{host_ip}:{host_port}:{cport}"]
    if network:
        args += ["--network", network, "--network-alias", name]
    for k, v in svc.get("environment", {}).items():
        args += ["-e", f"{k}={v}"]
    args.append(svc["image"])
    t0 = time.monotonic()
    subprocess.run(args, check=True, capture_output=True)
    cold = until_ready(kind, spec, int(host_port), t0)
    subprocess.run(["docker", "stop", "-t", "10", cname], check=True, capture_output=True)
    t0 = time.monotonic()
    subprocess.run(["docker", "start", cname], check=True, capture_output=True)
    warm = until_ready(kind, spec, int(host_port), t0)
    subprocess.run(["docker", "rm", "-f", "-v", cname], capture_output=True)
    return {"cold": round(cold), "warm": round(warm)}


def chain(per, case):
    """The stack's floor: its longest chain (zookeeper then kafka) or its slowest lone service."""
    chains = [per["zookeeper"][case] + per["kafka"][case]] if {"zookeeper", "kafka"} <= per.keys() else []
    chains += [v[case] for k, v in per.items() if k not in ("zookeeper", "kafka")]
    return max(chains)


def main():
    config = json.load(open(sys.argv[1]))
    net = "devstack-floor-net"
    names = sys.argv[2:]

    def clean():
        # The containers first: a network with one attached cannot be removed.
        subprocess.run(["docker", "rm", "-f", "-v"] + [f"devstack-floor-{n}" for n in names], capture_output=True)
        subprocess.run(["docker", "network", "rm", net], capture_output=True)

    clean()
    subprocess.run(["docker", "network", "create", net], check=True, capture_output=True)
    try:
        per, per_net = {}, {}
        for name in names:
            per[name] = lone(name, config["services"][name])
            per_net[name] = lone(name, config["services"][name], net)
    finally:
        clean()
    out = {"per_service": per, "per_service_net": per_net}
    for case in ("cold", "warm"):
        out[case] = chain(per, case)
        out[case + "_net"] = chain(per_net, case)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
