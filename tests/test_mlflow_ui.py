"""`mlflow ui` opens cgbench's runs in its model-training view, checked in a real headless browser
against a real `mlflow ui` on 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import run_cli

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_served(url: str, server: subprocess.Popen, deadline_s: float = 180) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert server.poll() is None, "mlflow ui exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            server_wait(server, 0.5)
    pytest.fail(f"mlflow ui did not answer at {url} within {deadline_s} s")


def server_wait(server: subprocess.Popen, seconds: float) -> None:
    """Give the server ``seconds`` to make progress (waits on the process, not on the clock)."""
    try:
        server.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromedriver are not installed "
                    "(apt-get install -y chromium chromium-driver)")
def test_mlflow_ui_opens_the_run_in_the_model_training_view(synth_dir, tmp_path, tracking_uri):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    proc = run_cli("run", "--preset", "tiny", "--data", str(synth_dir), "--iters", "2", "--tracking-uri",
                   tracking_uri, "--experiment", "ablations", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("ablations")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    link = re.search(r"then open (\S+)", proc.stdout).group(1)
    run_id = re.search(r"Run (\w+) finished", proc.stdout).group(1)

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
                               "--host", "127.0.0.1", "--port", str(port)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = None
    try:
        _wait_until_served(f"http://127.0.0.1:{port}/", server)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.get(link.replace("http://127.0.0.1:5000", f"http://127.0.0.1:{port}"))
        WebDriverWait(driver, 120).until(lambda d: "cyclegan-seed0" in d.find_element("tag name", "body").text)
        text = driver.find_element("tag name", "body").text
        assert "Model registry" in text and "Observability" not in text  # the model-training view, not GenAI's
        assert "Parameters" in text and "Metrics" in text  # the run's own page
        assert run_id in driver.current_url
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(server.pid, signal.SIGTERM)  # mlflow ui and the uvicorn workers it starts
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert Path(tracking_uri.removeprefix("sqlite:///")).is_file()
