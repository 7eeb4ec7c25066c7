"""The UIs in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by Selenium.

The module starts `airflow api-server` (simple auth manager, dags/ and plugins/ of this
checkout) and `evidently ui` over a small monitored shop on free loopback ports, then:
logs in, sees the DAGs, triggers `train_evaluate` with params through the REST API
(a JWT from POST /auth/token), opens the FreshCart page from the nav and checks it
against the monitoring tables, and finds the Evidently dashboard's panels.
Screenshots go to test-artifacts/ui/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from freshcart.monitoring import report as window_report
from freshcart.monitoring import tables, verdict
from freshcart.monitoring.page import project_id
from freshcart.monitoring.report import window_key
from freshcart.monitoring.scenario import build_scenario, register_champion, serve_views
from freshcart.monitoring.workspace import add_snapshot, dashboard, start_ui
from freshcart.services.process import terminate_all
from freshcart.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
AIRFLOW = Path(sys.executable).parent / "airflow"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
HOUR = timedelta(hours=1)
PASSWORD = secrets.token_urlsafe(12)
DAG_IDS = ("ingest_events", "materialize_features", "monitor_model", "train_evaluate")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _json(url: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as response:
        return json.loads(response.read())


def _wait_up(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url}: the server exited with {process.returncode}; its log {log}:\n"
                        f"{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=3):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout_s:.0f} s; log {log}:\n{log.read_text()[-3000:]}")


@dataclass
class Stack:
    shop: Settings
    airflow: str
    evidently: str
    project: str


def _monitored_shop(shop: Settings) -> None:
    """A small shop with bot traffic: champion v1 (and its promotion decision), three judged windows after
    the onset with their snapshots, and a verdict for each."""
    from freshcart.training.promote import promote

    started = time.perf_counter()
    scenario = build_scenario(shop, "bot_traffic", users=400, products=200, events_per_day=6_000)
    simulated = time.perf_counter()
    version = register_champion(scenario)
    promote(shop)  # v1 holds both aliases: the decision is recorded with its reason
    trained = time.perf_counter()
    for i in range(3):
        start = scenario.onset + i * HOUR
        serve_views(shop, scenario.views, scenario.model, start, start + HOUR, version=version)
        add_snapshot(shop, window_report.monitor_window(shop, scenario.reference, start, start + HOUR))
        verdict.decide(shop, start, start + HOUR)
    print(f"\nshop: simulated {simulated - started:.1f}s, champion {trained - simulated:.1f}s, "
          f"3 windows {time.perf_counter() - trained:.1f}s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.fail(f"{path} is missing: run `make setup` (it installs Debian's chromium and chromium-driver)")
    root = tmp_path_factory.mktemp("ui")
    home, data_dir = root / "airflow", root / "data"
    home.mkdir()
    airflow_port, evidently_port = _free_port(), _free_port()
    airflow_url, evidently_url = f"http://127.0.0.1:{airflow_port}", f"http://127.0.0.1:{evidently_port}"
    shop = load_settings(data_dir=data_dir, profile="local", training_threads=1, xgb_max_rounds=30, retrain_cooldown_hours=6,
                         monitor_min_rows=100, monitor_ui_url=evidently_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FRESHCART_", "FEAST_"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin", "AIRFLOW__API__BASE_URL": airflow_url,
                "AIRFLOW__API__WORKERS": "1", "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "FRESHCART_DATA_DIR": str(data_dir), "FRESHCART_PROFILE": "local",
                "FRESHCART_RETRAIN_COOLDOWN_HOURS": "6", "FRESHCART_MONITOR_UI_URL": evidently_url})
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": PASSWORD}))
    migrated = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, cwd=home, capture_output=True, text=True,
                              timeout=300)
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-2000:]
    logs = {name: (root / f"{name}.log").open("wb") for name in ("reserialize", "api-server", "evidently")}
    processes = [subprocess.Popen([str(AIRFLOW), "dags", "reserialize"], env=env, cwd=home,
                                  stdout=logs["reserialize"], stderr=subprocess.STDOUT)]
    processes.append(subprocess.Popen([str(AIRFLOW), "api-server", "--host", "127.0.0.1", "--port", str(airflow_port)],
                                      env=env, cwd=home, stdout=logs["api-server"], stderr=subprocess.STDOUT))
    try:
        began = time.perf_counter()
        _monitored_shop(shop)  # while Airflow starts
        assert processes[0].wait(timeout=300) == 0, (root / "reserialize.log").read_text()[-3000:]
        evidently = start_ui(shop, evidently_port, wait=False)
        processes.append(evidently)
        _wait_up(f"{airflow_url}/api/v2/version", processes[1], root / "api-server.log")
        _wait_up(f"{evidently_url}/api/version", evidently, root / "evidently.log")
        print(f"servers up {time.perf_counter() - began:.1f}s after the shop began")
        found = project_id(shop)
        assert found is not None
        yield Stack(shop, airflow_url, evidently_url, found)
    finally:
        terminate_all(processes)
        for log in logs.values():
            log.close()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    """Headless Chromium, logged in to Airflow as admin through its login form."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(f"{stack.airflow}/auth/login")
        wait = WebDriverWait(driver, 60)
        wait.until(until.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: d.get_cookie("_token") is not None)
        yield driver
    finally:
        driver.quit()


def _wait_text(driver: Any, texts: tuple[str, ...], timeout_s: float = 60.0) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout_s).until(lambda d: all(t in d.find_element("tag name", "body").text for t in texts))
    return str(driver.find_element("tag name", "body").text)


def test_the_freshcart_app_refuses_requests_without_a_login(stack: Stack) -> None:
    windows = tables.read_table(stack.shop, tables.WINDOWS)
    assert list(windows["status"]) == ["judged"] * 3, windows[["window_start", "status", "rows"]]
    key = window_key(windows["window_start"].iloc[0])
    for path in ("/freshcart/", "/freshcart/state.json", f"/freshcart/reports/{key}"):
        assert _status(stack.airflow + path) == 401, path
        assert _status(stack.airflow + path, token="not-a-token") == 403, path
    token = _json(f"{stack.airflow}/auth/token", {"username": "admin", "password": PASSWORD})["access_token"]
    assert _status(f"{stack.airflow}/freshcart/reports/{key}", token=token) == 200
    assert _status(f"{stack.airflow}/freshcart/reports/..%2F..%2Fetc", token=token) in (400, 404)


def test_login_shows_the_dags(stack: Stack, browser: Any) -> None:
    browser.get(f"{stack.airflow}/dags")
    text = _wait_text(browser, DAG_IDS)
    browser.save_screenshot(str(ARTIFACTS / "airflow-dags.png"))
    assert all(dag in text for dag in DAG_IDS)


def test_train_evaluate_triggered_with_params_through_the_rest_api(stack: Stack, browser: Any) -> None:
    token = _json(f"{stack.airflow}/auth/token", {"username": "admin", "password": PASSWORD})["access_token"]
    conf = {"start": "2025-01-13", "end": "2025-01-15", "models": ["xgboost"]}
    run = _json(f"{stack.airflow}/api/v2/dags/train_evaluate/dagRuns",
                {"dag_run_id": "ui_test__manual", "logical_date": None, "conf": conf}, token=token)
    assert run["dag_run_id"] == "ui_test__manual" and run["conf"] == conf and run["state"] == "queued"
    listed = _json(f"{stack.airflow}/api/v2/dags/train_evaluate/dagRuns", token=token)
    assert [r["dag_run_id"] for r in listed["dag_runs"]] == ["ui_test__manual"]
    browser.get(f"{stack.airflow}/dags/train_evaluate/runs")
    _wait_text(browser, ("ui_test__manual",))
    browser.save_screenshot(str(ARTIFACTS / "train-evaluate-runs.png"))


def test_the_freshcart_page_in_the_nav_shows_models_verdicts_and_cooldown(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    decisions = tables.read_table(stack.shop, tables.DECISIONS)
    assert len(decisions) == 3
    browser.get(f"{stack.airflow}/")
    _wait_text(browser, ("FreshCart",))  # the nav entry of the plugin's external view
    browser.get(f"{stack.airflow}/plugin/freshcart")
    frame = next(f for f in _wait_frames(browser) if (f.get_attribute("src") or "").rstrip("/").endswith("/freshcart"))
    browser.switch_to.frame(frame)
    try:
        text = _wait_text(browser, ("Champion: v1", "Promotion decisions", "Monitoring verdicts"))
        assert "the challenger is already champion" in text
        for _, row in decisions.iterrows():
            assert row["reason"] in text and row["action"] in text
        assert ("Cooldown active" in text) == bool(decisions["trigger"].any())
        assert ("No retraining triggered yet" in text) == (not decisions["trigger"].any())
        dashboard_link = browser.find_element(By.ID, "evidently-dashboard").get_attribute("href")
        assert dashboard_link == f"{stack.evidently}/projects/{stack.project}"
        reports = [a.get_attribute("href") for a in browser.find_elements(By.LINK_TEXT, "HTML report")]
        assert len(reports) == 3
    finally:
        browser.switch_to.default_content()
    browser.save_screenshot(str(ARTIFACTS / "freshcart-page.png"))
    browser.get(reports[0])
    _wait_text(browser, ("score",))
    browser.save_screenshot(str(ARTIFACTS / "window-report.png"))


def _wait_frames(driver: Any) -> list[Any]:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(lambda d: d.find_elements("tag name", "iframe"))
    return list(driver.find_elements("tag name", "iframe"))


def test_the_evidently_dashboard_shows_its_panels(stack: Stack, browser: Any) -> None:
    titles = tuple(p.title for p in dashboard().panels)
    browser.get(f"{stack.evidently}/projects/{stack.project}")
    _wait_text(browser, titles, timeout_s=90)
    browser.save_screenshot(str(ARTIFACTS / "evidently-dashboard.png"))
