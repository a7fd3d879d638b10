"""The web dashboard in a real browser: headless Chromium driven by selenium, against
`devstack up` of tests/fixtures/dashboard/stack.yaml (the ensureStudy stack's nine services and
dependencies as small native processes, so no Docker is needed).

Run: scripts/test.sh runs it; alone,
  cargo build && ~/.cache/devstack/dashboard-venv/bin/python -m pytest -q tests/dashboard

Checks are made on devstack's typed events (`up --json` on stdout) and on the page's DOM
(data attributes), polling with a deadline; screenshots go to target/screenshots/.
"""

import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("DEVSTACK_BIN", str(ROOT / "target" / "debug" / "devstack"))
FIXTURE = ROOT / "tests" / "fixtures" / "dashboard" / "stack.yaml"
SHOTS = ROOT / "target" / "screenshots"
SERVICES = [
    "zookeeper", "kafka", "postgres", "qdrant", "redis",
    "core-service", "ai-service", "celery-worker", "frontend",
]
SECRET = "hunter2-secret"  # postgres's POSTGRES_PASSWORD in the fixture


def wait_for(cond, what, timeout=20.0):
    """Polls `cond` until it returns something truthy; fails with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """A running `devstack up --json` and the typed events it printed."""

    def __init__(self, tmp, fixture=FIXTURE, extra=(), ready_within=20.0):
        self.project = f"dash-{os.getpid()}"
        # The main instance of the project, also when this repository is a linked git worktree.
        env = dict(os.environ, XDG_STATE_HOME=str(tmp / "state"), DASH_WEB_PORT=str(free_port()),
                   DEVSTACK_INSTANCE="")
        env.pop("NO_COLOR", None)
        self.env = env
        self.stderr = open(tmp / "devstack.stderr", "w")
        self.proc = subprocess.Popen(
            [BIN, "-f", str(fixture), "-p", self.project, "up", "--json", *extra],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env,
        )
        self.records = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        note = wait_for(
            lambda: self.find(lambda e: e["type"] == "note" and e["text"].startswith("dashboard: ")),
            "the dashboard URL",
        )
        self.url = note["text"].split(" ", 1)[1]
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{32})", self.url)
        assert m, self.url
        self.port, self.token = int(m.group(1)), m.group(2)
        wait_for(lambda: self.find(lambda e: e["type"] == "all_ready"), "every service ready",
                 timeout=ready_within)

    def _read(self):
        for line in self.proc.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.records.append(rec)

    def events(self):
        with self.lock:
            return [r["event"] for r in self.records if r.get("event")]

    def find(self, pred):
        return next((e for e in self.events() if pred(e)), None)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.stderr.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("dashboard"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser(stack):
    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,950", "--no-first-run", "--no-proxy-server"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=opts)
    driver.get(stack.url)
    yield driver
    driver.quit()


def shot(driver, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / name))


def states(driver):
    """service -> data-state of its table row."""
    return driver.execute_script(
        "const o = {}; for (const tr of document.querySelectorAll('#services tr[data-service]'))"
        " o[tr.dataset.service] = tr.querySelector('td.state').dataset.state; return o;"
    )


def pid_of(driver, service):
    return driver.execute_script(
        "return document.querySelector(`#services tr[data-service='${arguments[0]}'] td.pid`).dataset.pid;",
        service,
    )


def visible_lines(driver):
    """[service, text] of the log lines the page shows."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#log .l:not(.hide)')].map(e => [e.dataset.s, e._x]);"
    )


def test_table_lists_every_service_as_ready(stack, browser):
    wait_for(lambda: states(browser) == {s: "ready" for s in SERVICES},
             "all nine services ready in the table")
    assert browser.find_element(By.ID, "summary").text == "9/9 ready"
    assert browser.find_element(By.ID, "conn").get_attribute("data-conn") == "live"
    # The graph: one node per service, each coloured by its state.
    nodes = browser.execute_script(
        "return [...document.querySelectorAll('#graph g.node')].map(g => [g.dataset.service, g.getAttribute('class')]);"
    )
    assert sorted(n for n, _ in nodes) == sorted(SERVICES)
    assert all(c == "node st-ready" for _, c in nodes), nodes
    # The token left the address bar; the page works on its cookie.
    assert browser.current_url.rstrip("/").endswith(str(stack.port))
    # The frontend's port is a link; nothing secret is on the page.
    link = browser.find_element(By.CSS_SELECTOR, "tr[data-service=frontend] td.ports a")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", link.get_attribute("href"))
    # postgres prints its password: the page shows it masked.
    wait_for(lambda: any(s == "postgres" and x.startswith("postgres password is ")
                         for s, x in visible_lines(browser)), "postgres's password line")
    assert ["postgres", "postgres password is ****"] in visible_lines(browser)
    assert SECRET not in browser.page_source
    wait_for(lambda: any(s == "redis" for s, _ in visible_lines(browser)), "redis's lines in the log")
    shot(browser, "dashboard.png")


def test_restart_button_restarts_the_service(stack, browser):
    wait_for(lambda: states(browser).get("core-service") == "ready", "core-service ready")
    old = pid_of(browser, "core-service")
    assert old
    browser.find_element(By.CSS_SELECTOR, "tr[data-service=core-service] button[data-action=restart]").click()
    seen = []

    def back_ready_with_new_pid():
        # State and pid read together: a batch landing between two reads would pair the old
        # instance's state with the new one's pid.
        st, pid = browser.execute_script(
            "const tr = document.querySelector(`#services tr[data-service='core-service']`);"
            " return [tr.querySelector('td.state').dataset.state, tr.querySelector('td.pid').dataset.pid];"
        )
        if not seen or seen[-1] != st:
            seen.append(st)
        return st == "ready" and pid and pid != old and pid

    new = wait_for(back_ready_with_new_pid, "core-service ready again with a new pid")
    # The table went through the start (core-service is ready 0.6 s after it starts).
    assert any(s in ("stopping", "starting", "probing") for s in seen), seen
    assert seen[-1] == "ready"
    # devstack's own events agree: restarted, started with that pid, ready.
    assert stack.find(lambda e: e["type"] == "restarting" and e["service"] == "core-service")
    assert stack.find(lambda e: e["type"] == "started" and e["service"] == "core-service"
                      and str(e.get("pid")) == new)
    wait_for(lambda: any(s == "core-service" and x.startswith("restarting") for s, x in visible_lines(browser)),
             "the restart in the page's log")


def test_stop_and_start_buttons(stack, browser):
    row = "tr[data-service=celery-worker]"
    wait_for(lambda: states(browser).get("celery-worker") == "ready", "celery-worker ready")
    browser.find_element(By.CSS_SELECTOR, f"{row} button[data-action=stop]").click()
    wait_for(lambda: states(browser)["celery-worker"] == "stopped", "celery-worker stopped")
    assert browser.find_element(By.ID, "summary").text == "8/9 ready"
    node = "#graph g.node[data-service=celery-worker]"
    assert browser.find_element(By.CSS_SELECTOR, node).get_attribute("class") == "node st-stopped"
    assert stack.find(lambda e: e["type"] == "stopped" and e["service"] == "celery-worker")
    browser.find_element(By.CSS_SELECTOR, f"{row} button[data-action=start]").click()
    wait_for(lambda: states(browser)["celery-worker"] == "ready", "celery-worker ready again")
    wait_for(lambda: browser.find_element(By.ID, "summary").text == "9/9 ready", "9/9 ready again")


def test_log_filter_shows_only_the_chosen_service(stack, browser):
    Select(browser.find_element(By.ID, "svc-filter")).select_by_value("kafka")
    before = len(visible_lines(browser))
    # New lines arrive while filtered (every service ticks once a second).
    wait_for(lambda: len(visible_lines(browser)) > before + 1, "new kafka lines")
    lines = visible_lines(browser)
    assert lines and {s for s, _ in lines} == {"kafka"}, lines[:5]
    shot(browser, "dashboard-filter.png")
    # Text search narrows further; a regex too.
    search = browser.find_element(By.ID, "search")
    search.send_keys("tick 1")
    wait_for(lambda: all("tick 1" in x for _, x in visible_lines(browser)), "the text search applied")
    search.clear()
    browser.find_element(By.ID, "regex").click()
    search.send_keys(r"^kafka tick \d*[02468]$")
    wait_for(lambda: visible_lines(browser) and all(re.fullmatch(r"kafka tick \d*[02468]", x)
                                                    for _, x in visible_lines(browser)),
             "the regex search applied")
    search.clear()
    browser.find_element(By.ID, "regex").click()
    Select(browser.find_element(By.ID, "svc-filter")).select_by_value("")
    wait_for(lambda: len({s for s, _ in visible_lines(browser)}) > 3, "all services again")


def test_level_filter_keeps_warnings_and_above(stack, browser):
    levels = lambda: browser.execute_script(
        "return [...document.querySelectorAll('#log .l:not(.hide)')].map(e => [e.dataset.s, e.dataset.l || '']);"
    )
    Select(browser.find_element(By.ID, "level-filter")).select_by_value("warn")
    # celery-worker says WARNING every other tick (Celery's own format); plain ticks have no level.
    wait_for(lambda: any(s == "celery-worker" and l == "warn" for s, l in levels()),
             "a celery warning shown")
    shown = levels()
    assert all(l in ("warn", "error", "fatal") for _, l in shown), shown[:10]
    Select(browser.find_element(By.ID, "level-filter")).select_by_value("")
    wait_for(lambda: any(l == "" for _, l in levels()), "lines without a level again")


def test_pause_keeps_the_log_where_it_is(stack, browser):
    log = browser.find_element(By.ID, "log")
    pause = browser.find_element(By.ID, "pause")
    pause.click()
    assert pause.text == "resume"
    browser.execute_script("arguments[0].scrollTop = 0;", log)
    count = browser.execute_script("return arguments[0].childElementCount;", log)
    wait_for(lambda: browser.execute_script("return arguments[0].childElementCount;", log) > count + 3,
             "lines arriving while paused")
    assert browser.execute_script("return arguments[0].scrollTop;", log) == 0
    pause.click()
    wait_for(lambda: browser.execute_script(
        "const l = arguments[0]; return l.scrollTop + l.clientHeight >= l.scrollHeight - 2;", log),
        "auto-scroll back at the bottom")


def request(stack, method, path, headers):
    c = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        c.putrequest(method, path, skip_host=True)
        for k, v in headers.items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def test_requests_without_the_token_or_from_a_foreign_host_are_refused(stack):
    host = {"Host": f"127.0.0.1:{stack.port}"}
    tok = {"X-Devstack-Token": stack.token}
    assert request(stack, "GET", "/", host)[0] == 403
    assert request(stack, "GET", "/api/stack", host)[0] == 403
    assert request(stack, "GET", "/?token=" + "0" * 32, host)[0] == 403
    assert request(stack, "POST", "/api/services/redis/restart", host)[0] == 403
    # DNS rebinding: the right token, a foreign name.
    assert request(stack, "GET", f"/?token={stack.token}", {"Host": f"evil.example:{stack.port}"})[0] == 403
    assert request(stack, "GET", "/api/stack", {"Host": "127.0.0.1", **tok})[0] == 403
    # A cross-site form post with the cookie would carry a foreign Origin.
    cookie = {"Cookie": f"devstack_token_{stack.port}={stack.token}"}
    assert request(stack, "POST", "/api/services/redis/restart",
                   {**host, **cookie, "Origin": "http://evil.example"})[0] == 403
    # With the token: allowed, and still no secret in what is served.
    status, body = request(stack, "GET", "/api/stack", {"Host": f"localhost:{stack.port}", **tok})
    assert status == 200
    assert SECRET not in body
    assert json.loads(body)["project"] == stack.project
    assert request(stack, "POST", "/api/services/nosuch/restart", {**host, **tok})[0] == 404


def test_an_edit_of_the_stack_file_shows_its_plan_and_an_invalid_one_a_banner(tmp_path):
    """The stack file is live: an invalid save shows the located error in a banner (nothing
    changes), a valid one hides it, shows the plan in the log and a new service in the table."""
    fixture = tmp_path / "stack.yaml"
    text = FIXTURE.read_text()
    fixture.write_text(text)
    s = Stack(tmp_path, fixture=fixture)
    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,950", "--no-first-run", "--no-proxy-server"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=opts)
    try:
        driver.get(s.url)
        wait_for(lambda: states(driver).get("redis") == "ready", "the table")
        banner = lambda: driver.execute_script(
            "const b = document.getElementById('config-error');"
            " return b.hidden ? null : b.querySelector('pre').textContent;")
        assert banner() is None
        before = pid_of(driver, "redis")
        fixture.write_text(text + "  broken: { command: [sleep, '1'], depends_on: [nowhere] }\n")
        err = wait_for(banner, "the config banner")
        assert "nowhere" in err and "stack.yaml" in err, err
        shot(driver, "dashboard-config-error.png")
        assert pid_of(driver, "redis") == before, "an invalid edit changes nothing"
        fixture.write_text(text + "  beat: { <<: *svc, environment: { SVC: beat }, depends_on: [redis] }\n")
        wait_for(lambda: banner() is None, "the banner gone")
        wait_for(lambda: any("config applied" in (x or "") and "beat start" in (x or "")
                             for _, x in visible_lines(driver)), "the plan in the log")
        wait_for(lambda: states(driver).get("beat") == "ready", "the new service in the table")
        assert pid_of(driver, "redis") == before, "the others untouched"
        plan = s.find(lambda e: e["type"] == "config_applied")
        assert {c["service"]: c["action"] for c in plan["changes"]}["beat"] == "start", plan
        shot(driver, "dashboard-config-applied.png")
    finally:
        driver.quit()
        s.stop()
