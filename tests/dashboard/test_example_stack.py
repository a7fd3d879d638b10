"""The dashboard against the real example stack (stack.yaml at the top: five containers from the
local images, four native processes from the example app's virtualenv), with every port on a
free host port so it runs beside anyone's own stack. Heavier than the fixture tests (Docker, the
images and the venv the stack's preparation makes), so it runs only when asked:

    DEVSTACK_DASHBOARD_EXAMPLE=1 ~/.cache/devstack/dashboard-venv/bin/python -m pytest -q tests/dashboard/test_example_stack.py

Checks: all nine services ready (and the three preparation tasks completed) in the table; the restart button takes core-service through
the start again to ready with a new pid. Saves target/screenshots/dashboard-example.png.
"""

import os
import pathlib
import shutil
import subprocess
import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

import test_dashboard as t

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.environ.get("DEVSTACK_DASHBOARD_EXAMPLE") != "1",
                                reason="set DEVSTACK_DASHBOARD_EXAMPLE=1 to run against the example stack")


def test_example_stack_in_the_dashboard(tmp_path):
    start = time.monotonic()
    stack = t.Stack(tmp_path, fixture=ROOT / "stack.yaml", extra=["--free-ports"], ready_within=180)
    try:
        opts = Options()
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1400,950"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                                  options=opts)
        try:
            driver.get(stack.url)
            tasks = {"debian-base": "completed", "kafka-broker": "completed", "venv": "completed"}
            t.wait_for(lambda: t.states(driver) == {**{s: "ready" for s in t.SERVICES}, **tasks},
                       "the example's nine services ready and its three tasks completed in the table")
            assert driver.find_element(By.ID, "summary").text == "12/12 ready"
            kinds = driver.execute_script(
                "return Object.fromEntries([...document.querySelectorAll('#services tr[data-service]')]"
                ".map(tr => [tr.dataset.service, tr.querySelector('td.kind').textContent]));")
            assert sorted(s for s, k in kinds.items() if k == "container") == \
                ["kafka", "postgres", "qdrant", "redis", "zookeeper"], kinds
            t.shot(driver, "dashboard-example.png")
            old = t.pid_of(driver, "core-service")
            driver.find_element(By.CSS_SELECTOR,
                                "tr[data-service=core-service] button[data-action=restart]").click()
            seen = []

            def back():
                st = t.states(driver)["core-service"]
                if not seen or seen[-1] != st:
                    seen.append(st)
                pid = t.pid_of(driver, "core-service")
                return st == "ready" and pid and pid != old

            t.wait_for(back, "core-service ready again with a new pid", timeout=60)
            assert any(s in ("stopping", "starting", "probing") for s in seen), seen
            print(f"example stack: up, ready and core-service restarted in {time.monotonic() - start:.1f}s;"
                  f" states seen: {seen}")
        finally:
            driver.quit()
    finally:
        stack.stop()
        # Its containers and volumes go too: a throwaway project.
        subprocess.run([t.BIN, "-f", str(ROOT / "stack.yaml"), "-p", stack.project, "down", "-v"],
                       capture_output=True, timeout=120, env=stack.env)
