#!/usr/bin/env python3
"""Load test of the web dashboard: a stack of 100 native processes, each printing 10 lines a
second (1,000 lines/s in all), run by `devstack up` for a minute with the dashboard open in
headless Chromium. Reports devstack's CPU (user+system over the loaded minute, as % of one core)
and RSS (now and peak), and how far the page's log is behind at the end (the newest line the
page shows against the newest line devstack wrote) — the page must be current.

    bench/dashboard-load.py [--services 100] [--rate 10] [--seconds 60] [--baseline]

Needs the dashboard test environment (scripts/prepare-test-env.sh): chromium, chromium-driver
and the selenium venv; run it with that venv's python:
    ~/.cache/devstack/dashboard-venv/bin/python bench/dashboard-load.py
Takes about as long as --seconds plus start-up; not part of scripts/test.sh.
"""
import argparse

import metric
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = os.environ.get("DEVSTACK_BIN", str(ROOT / "target" / "debug" / "devstack"))
HZ = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_kib(pid, key="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--rate", type=int, default=10, help="lines per second per service")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--baseline", action="store_true",
                    help="the same stack with --no-dashboard and no browser, for comparison")
    args = ap.parse_args()

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="devstack-dash-load-"))
    # perl: a light process (a few MB) that sleeps without forking.
    cmd = ("perl -e '$|=1; my $i=0; while (1) { $i++; print \"$ENV{SVC} line $i \" . (\"x\" x 60) . \"\\n\";"
           f" select(undef, undef, undef, {1 / args.rate}) }}'")
    cmd = cmd.replace("$", "$$")  # stack.yaml interpolates `$`
    lines = ["name: dashload", "services:"]
    for n in range(args.services):
        lines += [f"  svc{n:03d}:", f"    command: {json.dumps(cmd)}",
                  f"    environment: {{ SVC: svc{n:03d} }}", "    watch: false"]
    (tmp / "stack.yaml").write_text("\n".join(lines) + "\n")

    env = dict(os.environ, XDG_STATE_HOME=str(tmp / "state"))
    extra = ["--no-dashboard"] if args.baseline else []
    proc = subprocess.Popen([BIN, "-f", str(tmp / "stack.yaml"), "up", "--json", *extra],
                            stdout=subprocess.PIPE, stderr=open(tmp / "stderr", "w"), text=True, env=env)
    state = {"url": None, "ready": False, "last_t": 0, "lines": 0}

    def read():
        for line in proc.stdout:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            e = r.get("event") or {}
            if e.get("type") == "note" and e.get("text", "").startswith("dashboard: "):
                state["url"] = e["text"].split(" ", 1)[1]
            if e.get("type") == "all_ready":
                state["ready"] = True
            if r.get("stream") == "stdout":
                state["last_t"] = max(state["last_t"], r["t"])
                state["lines"] += 1

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 120
    while not ((state["url"] or args.baseline) and state["ready"]):
        if time.monotonic() > deadline or proc.poll() is not None:
            sys.exit(f"the stack did not come up; see {tmp / 'stderr'}")
        time.sleep(0.1)

    if args.baseline:
        try:
            t0, c0, n0 = time.monotonic(), cpu_ticks(proc.pid), state["lines"]
            time.sleep(args.seconds)
            elapsed = time.monotonic() - t0
            print(json.dumps({
                "services": args.services,
                "dashboard": False,
                "lines_per_second_written": round((state["lines"] - n0) / elapsed),
                "devstack_cpu_percent_of_one_core": round(100 * (cpu_ticks(proc.pid) - c0) / HZ / elapsed, 1),
                "devstack_rss_mib": round(rss_kib(proc.pid) / 1024, 1),
                "devstack_peak_rss_mib": round(rss_kib(proc.pid, "VmHWM") / 1024, 1),
            }, indent=2))
            return 0
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)

    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,950"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=opts)
    try:
        driver.get(state["url"])
        t0, c0, n0 = time.monotonic(), cpu_ticks(proc.pid), state["lines"]
        # Age of the newest line the page shows: devstack stamps each line when it reads it.
        age = lambda: driver.execute_script(
            "const l = document.querySelector('#log .l:last-child'); return l ? Date.now() - l._t : null;")
        ages = []
        while time.monotonic() - t0 < args.seconds:
            time.sleep(5)
            ages.append(age())
        elapsed = time.monotonic() - t0
        c1, n1 = cpu_ticks(proc.pid), state["lines"]
        written = n1 - n0
        lag_ms = age()
        shown = driver.execute_script(
            "const l = document.querySelector('#log .l:last-child'); return l ? l._x : null;")
        counts = driver.execute_script(
            "return [document.querySelectorAll('#log .l').length, document.querySelector('#conn').dataset.conn];")
        report = {
            "services": args.services,
            "lines_per_second_offered": args.services * args.rate,
            "lines_per_second_written": round(written / elapsed),
            "devstack_cpu_percent_of_one_core": round(100 * (c1 - c0) / HZ / elapsed, 1),
            "devstack_rss_mib": round(rss_kib(proc.pid) / 1024, 1),
            "devstack_peak_rss_mib": round(rss_kib(proc.pid, "VmHWM") / 1024, 1),
            "page_lines_kept": counts[0],
            "page_connection": counts[1],
            "page_newest_line_age_ms": lag_ms,
            "page_newest_line_age_ms_every_5s": ages,
            "page_newest_line": shown,
        }
        print(json.dumps(report, indent=2))
        load = f"{args.services * args.rate} lines/s, page open"
        metric.emit(f"dashboard CPU, {load}", report["devstack_cpu_percent_of_one_core"], "% core", better="lower")
        metric.emit(f"dashboard peak RSS, {load}", report["devstack_peak_rss_mib"], "MiB", better="lower")
        ok = counts[1] == "live" and lag_ms is not None and lag_ms < 1500
        print("page current at the end" if ok else "PAGE BEHIND", file=sys.stderr)
        return 0 if ok else 1
    finally:
        driver.quit()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
