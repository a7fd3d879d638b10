"""A screenshot of the interactive terminal view for the README, taken the way a person sees it:
`devstack up` in a tmux pane, a highlight and a restart done with the keys, the pane captured
with its colours (`capture-pane -e`), turned into HTML and photographed by headless Chromium.
The behaviour itself is tested in tests/terminal_view.rs; this checks only that the picture
shows the status line. Saves target/screenshots/terminal.png.
"""

import html
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("DEVSTACK_BIN", str(ROOT / "target" / "debug" / "devstack"))
FIXTURE = ROOT / "tests" / "fixtures" / "dashboard" / "stack.yaml"
SHOTS = ROOT / "target" / "screenshots"

BASE16 = ["#1c1c1c", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
          "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff"]


def xterm(n):
    if n < 16:
        return BASE16[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    g = 8 + (n - 232) * 10
    return "#%02x%02x%02x" % (g, g, g)


def ansi_to_html(text):
    """SGR colours and attributes as spans; everything else as text."""
    out, st = [], {}
    for part in re.split(r"(\x1b\[[0-9;]*m)", text):
        m = re.fullmatch(r"\x1b\[([0-9;]*)m", part)
        if not m:
            if part:
                style = []
                fg, bg = st.get("fg"), st.get("bg")
                if st.get("rev"):
                    fg, bg = bg or "#0d1117", fg or "#d8dee4"
                if fg:
                    style.append(f"color:{fg}")
                if bg:
                    style.append(f"background:{bg}")
                if st.get("bold"):
                    style.append("font-weight:bold")
                if st.get("dim"):
                    style.append("opacity:.6")
                out.append(f'<span style="{";".join(style)}">{html.escape(part)}</span>')
            continue
        codes = [int(c) if c else 0 for c in m.group(1).split(";")]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                st = {}
            elif c == 1:
                st["bold"] = True
            elif c == 2:
                st["dim"] = True
            elif c == 22:
                st.pop("bold", None), st.pop("dim", None)
            elif c == 7:
                st["rev"] = True
            elif c == 27:
                st.pop("rev", None)
            elif 30 <= c <= 37 or 90 <= c <= 97:
                st["fg"] = xterm(c - 30 if c < 90 else c - 82)
            elif 40 <= c <= 47 or 100 <= c <= 107:
                st["bg"] = xterm(c - 40 if c < 100 else c - 92)
            elif c == 39:
                st.pop("fg", None)
            elif c == 49:
                st.pop("bg", None)
            elif c in (38, 48) and i + 2 < len(codes) and codes[i + 1] == 5:
                st["fg" if c == 38 else "bg"] = xterm(codes[i + 2])
                i += 2
            elif c in (38, 48) and i + 4 < len(codes) and codes[i + 1] == 2:
                st["fg" if c == 38 else "bg"] = "#%02x%02x%02x" % tuple(codes[i + 2:i + 5])
                i += 4
            i += 1
    return "".join(out)


def wait_for(cond, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_terminal_view_screenshot(tmp_path):
    sock = f"devstack-shot-{os.getpid()}"
    tmux = lambda *a: subprocess.run(["tmux", "-L", sock, *a], check=True, capture_output=True, text=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "132", "-y", "30", "bash --norc --noprofile")
    try:
        tmux("send-keys", "-t", "t", "-l",
             f"PS1='$ '; clear; env -u CI -u NO_COLOR DEVSTACK_INSTANCE= XDG_STATE_HOME={tmp_path} DASH_WEB_PORT={port} "
             f"{BIN} -f {FIXTURE} -p shot{os.getpid()} up")
        tmux("send-keys", "-t", "t", "Enter")
        last = lambda: ([l for l in tmux("capture-pane", "-p", "-t", "t").stdout.splitlines() if l.strip()]
                        or [""])[-1]
        wait_for(lambda: "9/9 ready" in last(), "9/9 ready")
        tmux("send-keys", "-t", "t", "/")
        tmux("send-keys", "-t", "t", "-l", "tick [0-9]*5$")
        tmux("send-keys", "-t", "t", "Enter")
        wait_for(lambda: "highlight:" in last(), "the highlight")
        tmux("send-keys", "-t", "t", "r")
        tmux("send-keys", "-t", "t", "-l", "core")
        tmux("send-keys", "-t", "t", "Enter")
        # The restart's own `ready in`: after its `restarting` line (the start-up's may still show).
        screen = wait_for(lambda: (lambda s: "restarting" in s
                                   and "core-service  ▸ ready in" in s.split("restarting")[-1] and s)(
            tmux("capture-pane", "-p", "-t", "t").stdout), "core-service restarted")
        assert "restarting: restart requested" in screen
        # A few more ticks so a highlighted `tick …5` is on screen.
        wait_for(lambda: re.search(r"tick \d*5$", tmux("capture-pane", "-p", "-t", "t").stdout, re.M),
                 "a highlighted line")
        # The status line is redrawn after each burst of lines: capture a frame that has it.
        colored = wait_for(lambda: (lambda c: "9/9 ready" in c and c)(
            tmux("capture-pane", "-p", "-e", "-t", "t").stdout), "a frame with the status line")
        assert "\x1b[" in colored, "the pane has colours"
        page = tmp_path / "terminal.html"
        page.write_text(
            "<!doctype html><meta charset=utf-8><body style='margin:0;background:#0d1117'>"
            "<pre style='display:inline-block;margin:0;padding:10px;color:#d8dee4;background:#0d1117;"
            "font:13px/1.3 \"DejaVu Sans Mono\",monospace'>" + ansi_to_html(colored) + "</pre>")
        opts = Options()
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1200,900"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                                  options=opts)
        try:
            driver.get(page.as_uri())
            pre = driver.find_element("tag name", "pre")
            assert "9/9 ready" in pre.text
            SHOTS.mkdir(parents=True, exist_ok=True)
            pre.screenshot(str(SHOTS / "terminal.png"))
        finally:
            driver.quit()
        tmux("send-keys", "-t", "t", "q")
        wait_for(lambda: last().startswith("$"), "devstack's exit")
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
