#!/usr/bin/env python3
"""Where a run's CPU time goes, by part of the machine, for bench/up-vs-compose.sh: every
process's user+system time from /proc before and after, the time of the children each one
reaped (dockerd's `iptables` runs) counted with it. Not what init or containerd's shims reap:
a process that ends during the run can bring a whole earlier life with it (a stopped
container's), so the short-lived `runc` runs of the shims are not counted either. The two runs
of this script itself are left out.

    bench/cpu_by_part.py snap FILE          saves the processes' times now
    bench/cpu_by_part.py diff FILE          prints {"engine": ms, "services": ms, ...} since

Parts: `engine` (dockerd, containerd, the shims, runc, fuse-overlayfs, docker-proxy and what
they ran), `services` (the processes inside containers) and `rest`: devstack (an exited devstack
is counted with the shell that reaped it), the benchmark's own shell and python, anything else.
What an orchestrator can take out of a run's work is at most its own share of `rest`.
"""
import json, os, sys

HZ = os.sysconf("SC_CLK_TCK")
ENGINE = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc",
          "fuse-overlayfs", "docker-proxy", "docker-init", "iptables", "exe")


def processes():
    """{(pid, start time): (part, own ticks, reaped children's ticks)}."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = open(f"/proc/{p}/stat").read()
            cgroup = open(f"/proc/{p}/cgroup").read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        f = stat[stat.rindex(")") + 2:].split()
        if "/docker/" in cgroup or "docker-" in cgroup:
            part = "services"
        elif comm.startswith(ENGINE):
            part = "engine"
        else:
            part = "rest"
        # What init and containerd's shims reap is a whole earlier life (a shim that exits
        # brings its container's), not this run's work: left out.
        reaps = p != "1" and not comm.startswith("containerd")
        out[f"{p}:{f[19]}"] = (part, int(f[11]) + int(f[12]), int(f[13]) + int(f[14]) if reaps else 0)
    return out


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    now = processes()
    me = os.times()
    if cmd == "snap":
        # This process's own time reaches its parent's reaped total: taken out in `diff`.
        json.dump({"procs": now, "snap_ms": (me.user + me.system) * 1000}, open(path, "w"))
        return
    saved = json.load(open(path))
    before = saved["procs"]
    now.pop(f"{os.getpid()}:{open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19]}", None)
    parts = {"engine": 0, "services": 0, "rest": 0}
    for key, (part, own, reaped) in now.items():
        _, own0, reaped0 = before.get(key, (part, 0, 0))
        parts[part] += (own - own0) + (reaped - reaped0)
    out = {k: v * 1000 / HZ for k, v in parts.items()}
    out["rest"] = max(0.0, out["rest"] - saved["snap_ms"])
    print(json.dumps({k: round(v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
