"""The perceptual study (Table 1): trial drawing, the HTTP API's integrity and refusals, durable
answers across a killed server, fooled rates in MLflow, the report's Table 1, and two participants
taking full sessions in a real headless Chromium."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from PIL import Image

from conftest import assert_one_line_error
from cgbench.cli import main
from cgbench.config import resolve
from cgbench.errors import CgbenchError
from cgbench.report import build_report
from cgbench.study import PRACTICE_TRIALS, SCORED_TRIALS
from cgbench.study.images import image_folder, prepare_images
from cgbench.study.server import make_server
from cgbench.study.store import Store, draw_trials, study_folder
from cgbench.tracking import RunTracker
from cgbench.training import train

TRIALS = PRACTICE_TRIALS + SCORED_TRIALS
FOOLED = "study/labels2photo/fooled_rate"


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


# --- drawing trials ----------------------------------------------------------------------------


def test_trials_never_show_a_generated_image_beside_its_own_target():
    for seed in range(20):
        trials = draw_trials(seed, n_fake=6, n_real=6, paired=True)
        assert len(trials) == TRIALS
        assert all(fake != real for fake, real, _ in trials)
        for start in range(0, TRIALS - 6, 6):  # rounds of permutations: each image once per round
            assert sorted(f for f, _, _ in trials[start:start + 6]) == list(range(6))
            assert sorted(r for _, r, _ in trials[start:start + 6]) == list(range(6))
    assert draw_trials(3, 6, 6, True) == draw_trials(3, 6, 6, True)  # the stored seed reproduces them
    sides = [side for seed in range(20) for _, _, side in draw_trials(seed, 6, 6, True)]
    assert 0.4 < sides.count("left") / len(sides) < 0.6
    unpaired = draw_trials(0, n_fake=5, n_real=3, paired=False)  # an unaligned split: any real image
    assert {f for f, _, _ in unpaired} == set(range(5)) and {r for _, r, _ in unpaired} == set(range(3))


@pytest.mark.parametrize("uri, expected", [
    ("sqlite:////data/x/mlflow.db", "/data/x/study"),
    ("sqlite:///rel/mlflow.db", "{cwd}/rel/study"),
    ("file:///data/y/mlruns", "/data/y/study"),
    ("/data/z/mlruns", "/data/z/study"),
    ("http://tracking.example:5000", "{cwd}/study"),
])
def test_the_study_lives_beside_the_tracking_store(uri, expected):
    assert study_folder(None, uri) == Path(expected.format(cwd=Path.cwd().resolve()))
    assert study_folder("elsewhere", uri) == Path("elsewhere")


# --- two tiny trained methods -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(synth_dir, tmp_path_factory):
    """A tiny CycleGAN and a tiny SimGAN run on the same data, in one sqlite store."""
    folder = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{folder}/mlflow.db"
    quiet = dict(progress=False, echo=lambda *_: None)
    ids = [train(resolve("tiny", data=str(synth_dir), method=m), tracking_uri=uri, experiment="runs", **quiet).run_id
           for m in ("cyclegan", "simgan")]
    return SimpleNamespace(uri=uri, ids=ids, folder=folder)


def _fakes(study_dir: Path, run_id: str) -> set[bytes]:
    return {p.read_bytes() for p in (image_folder(study_dir, run_id, "labels2photo") / "fake").glob("*.png")}


def _get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _post(url: str, body: dict | bytes) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def served(runs, tmp_path):
    """The study of both runs on an in-process server on a free port."""
    study_dir = tmp_path / "study"
    image_sets = [prepare_images(runs.uri, r, "labels2photo", study_dir, "cpu") for r in runs.ids]
    server = make_server(Store(study_dir / "study.db"), image_sets, "labels2photo")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}", dir=study_dir, runs=runs)
    server.shutdown()
    server.server_close()
    thread.join(timeout=30)


# --- the API: nothing reveals the real image; answers are checked -------------------------------


def test_trial_payloads_reveal_nothing_and_bad_answers_are_refused(served):
    url = served.url
    status, first = _post(f"{url}/api/participants", {})
    assert status == 201
    pid = first["participant"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", pid)
    fakes = _fakes(served.dir, served.runs.ids[0])  # the first participant gets the first run
    tokens, trial = set(), first["trial"]
    for number in range(3):
        assert set(trial) == {"phase", "index", "of", "trial", "left", "right"}
        assert [trial[k] for k in ("phase", "index", "of", "trial")] == ["practice", number + 1, PRACTICE_TRIALS,
                                                                        number]
        assert _get(f"{url}/api/participants/{pid}/trial")[2] == json.dumps(trial).encode()  # what a reload gets
        images = {}
        for side in ("left", "right"):
            found = re.fullmatch(r"/api/images/([A-Za-z0-9_-]{22})", trial[side])
            assert found, trial[side]  # an opaque random token: no file name, index, run or kind
            tokens.add(found.group(1))
            status, headers, body = _get(url + trial[side])
            assert status == 200
            headers.pop("Date")
            images[side] = (headers, body)
            with Image.open(io.BytesIO(body)) as img:
                assert (img.format, img.mode, img.size, img.info) == ("PNG", "RGB", (32, 32), {})
        (h_left, left), (h_right, right) = images["left"], images["right"]
        assert h_left == h_right and len(left) == len(right)  # identical headers, byte length included
        assert left != right and (left in fakes) != (right in fakes)
        status, reply = _post(f"{url}/api/participants/{pid}/trials/{number}", {"choice": "left"})
        assert status == 200 and set(reply) == {"next", "feedback"}  # practice: feedback after answering
        assert reply["feedback"] == {"correct": left not in fakes, "real": "right" if left in fakes else "left"}
        trial = reply["next"]
    assert len(tokens) == 6  # a fresh token per image per trial

    # A second participant (fewest sessions started: the other run) gets other tokens.
    status, other = _post(f"{url}/api/participants", {})
    assert other["participant"] != pid and {other["trial"]["left"], other["trial"]["right"]}.isdisjoint(
        {trial["left"], trial["right"]})
    shown = {_get(url + other["trial"][side])[2] for side in ("left", "right")}
    assert len(shown & _fakes(served.dir, served.runs.ids[1])) == 1  # one image of the other run's, one real

    refusals = [
        (f"/api/participants/{pid}/trials/2", {"choice": "left"}, 409, "already answered"),
        (f"/api/participants/{pid}/trials/7", {"choice": "left"}, 409, "in order"),
        (f"/api/participants/{pid}/trials/{TRIALS}", {"choice": "left"}, 404, "unknown trial"),
        ("/api/participants/nobody/trials/3", {"choice": "left"}, 404, "unknown participant"),
        (f"/api/participants/{pid}/trials/3", {"choice": "middle"}, 400, "'left' or 'right'"),
        (f"/api/participants/{pid}/trials/3", b"not json", 400, "JSON object"),
    ]
    for path, body, code, message in refusals:
        status, reply = _post(url + path, body)
        assert status == code and message in reply["error"], (path, reply)
    assert _get(f"{url}/api/images/{'A' * 22}")[0] == 404
    assert _get(f"{url}/api/participants/{pid}/trial")[2] == json.dumps(trial).encode()  # nothing moved on


def _complete(url: str, fakes: set[bytes], fooled: int) -> str:
    """A participant who chooses the generated image in the first ``fooled`` scored trials and the real
    one after (told apart by the test from the cached images); returns their id."""
    status, reply = _post(f"{url}/api/participants", {})
    pid, trial = reply["participant"], reply["trial"]
    while trial["phase"] != "done":
        left_is_fake = _get(url + trial["left"])[2] in fakes
        choose_fake = trial["phase"] == "scored" and trial["index"] <= fooled
        side = "left" if left_is_fake == choose_fake else "right"
        status, reply = _post(f"{url}/api/participants/{pid}/trials/{trial['trial']}", {"choice": side})
        assert status == 200 and ("feedback" in reply) == (trial["phase"] == "practice")
        trial = reply["next"]
    return pid


def test_fooled_rates_are_recorded_in_each_run(served, tmp_path):
    (a, b), url = served.runs.ids, served.url
    fakes = _fakes(served.dir, a) | _fakes(served.dir, b)
    _complete(url, fakes, fooled=10)  # run a (first given)
    _complete(url, fakes, fooled=4)  # run b (fewest completed)
    _complete(url, fakes, fooled=20)  # run a again (a tie; the order given)
    _post(f"{url}/api/participants", {})  # an incomplete session never counts
    out = _cli("study", "results", "--tracking-uri", served.runs.uri, "--study-dir", str(served.dir))
    assert out.exit_code == 0, out.output
    client = MlflowClient(served.runs.uri)
    rates_a = [25.0, 50.0]
    m = client.get_run(a).data.metrics
    assert m[FOOLED] == pytest.approx(37.5) and m[FOOLED + "_participants"] == 2
    assert m[FOOLED + "_sem"] == pytest.approx(np.std(rates_a, ddof=1) / math.sqrt(2))
    m = client.get_run(b).data.metrics
    assert m[FOOLED] == pytest.approx(10.0) and m[FOOLED + "_participants"] == 1
    assert math.isnan(m[FOOLED + "_sem"])  # no standard error from one participant
    assert [h.step for h in client.get_metric_history(a, FOOLED)] == [4]  # the images' checkpoint
    sessions = json.loads(Path(client.download_artifacts(a, "study/labels2photo/sessions.json", str(tmp_path)))
                          .read_text())
    assert [p["fooled_rate"] for p in sessions["participants"]] == rates_a
    assert "37.5 ± 12.5" in out.output


# --- bad input: one line, exit status 2 ----------------------------------------------------------


def test_bad_study_commands_are_one_line_errors(runs, tmp_path):
    study_dir = str(tmp_path / "study")
    common = ("--tracking-uri", runs.uri, "--study-dir", study_dir)
    assert_one_line_error(_cli("study", "serve", "--run", "0" * 32, *common), "no run '000")
    assert_one_line_error(_cli("study", "serve", *common), "give each run to study once")
    assert_one_line_error(_cli("study", "serve", "--run", runs.ids[0], "--run", runs.ids[0], *common), "once")
    empty = RunTracker.create(runs.uri, "runs", "empty", {"cgbench.method": "cyclegan"})
    empty.log_json(resolve("tiny").to_dict(), "config.json")
    assert_one_line_error(_cli("study", "serve", "--run", empty.run_id, *common), "has no checkpoint")
    assert_one_line_error(_cli("study", "results", *common), "no study database")
    out = _cli("study", "serve", "--run", runs.ids[0], "--host", "256.0.0.1", "--port", "0", *common)
    assert out.exit_code == 2 and "warning: serving on 256.0.0.1" in out.stderr
    assert "error: cannot serve on 256.0.0.1:0" in out.stderr and "Traceback" not in out.stderr
    assert_one_line_error(_cli("study", "results", *common), "no completed labels2photo sessions")
    RunTracker.create(runs.uri, "plain", "not-studied", {"cgbench.row": "cyclegan"}).end()
    assert_one_line_error(_cli("report", "--tracking-uri", runs.uri, "--experiment", "plain", "--table", "1",
                               "--out", str(tmp_path)), "has study results")
    assert_one_line_error(_cli("report", "--tracking-uri", runs.uri, "--table", "6"), "choose from 1, 2, 3, 4, 5")


# --- the report's Table 1 -------------------------------------------------------------------------------


def _studied_run(uri: str, row: str, name: str, metrics: dict, digest: str = "d1"):
    tracker = RunTracker.create(uri, "table-1", name, {"cgbench.row": row, "cgbench.method": row,
                                                   "cgbench.dataset": "synthcity", "cgbench.dataset_digest": digest})
    tracker.log_params({"image_size": 128})
    tracker.log_result_metrics(metrics, 0)
    tracker.end()
    return tracker.run_id


def test_report_table_1_beside_the_papers_numbers(runs, tmp_path):
    tracking_uri = runs.uri  # its own experiment in the shared store (a fresh store costs seconds)
    _studied_run(tracking_uri, "cyclegan", "cg-0", {FOOLED: 20.0, FOOLED + "_sem": 2.5,
                                                    FOOLED + "_participants": 25})
    _studied_run(tracking_uri, "simgan", "sg-0", {FOOLED: 3.0, FOOLED + "_sem": math.nan,
                                                  FOOLED + "_participants": 1,
                                                  "study/photo2labels/fooled_rate": 7.5,
                                                  "study/photo2labels/fooled_rate_participants": 1})
    _studied_run(tracking_uri, "pix2pix", "p2p-0", {FOOLED: 40.0, FOOLED + "_participants": 1})
    report = build_report(tracking_uri, experiment="table-1", tables="1", out_dir=tmp_path, log_to_mlflow=False)
    lines = report.markdown.splitlines()
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == ("| Method | labels→photo: ours | paper map→photo | photo→labels: ours "
                        "| paper photo→map |")
    assert table[1:] == [
        "| CoGAN | not run | 0.6 | not run | 0.9 |",
        "| BiGAN/ALI | not run | 2.1 | not run | 1.9 |",
        "| SimGAN (sg-0) | 3.0 (n=1) | 0.7 | 7.5 (n=1) | 2.6 |",
        "| Feature loss + GAN | not run | 1.2 | not run | 0.3 |",
        "| CycleGAN (cg-0) | 20.0 ± 2.5 (n=25) | 26.8 ± 2.8 | not run | 23.2 ± 3.4 |",
        "| pix2pix (p2p-0) | 40.0 (n=1) | – | not run | – |",
    ]
    caption = next(line for line in lines if line.startswith("**Table 1."))
    assert "synthcity (data d1) validation images at 128x128" in caption and "maps↔aerial photos" in caption
    assert '<table id="table-1">' in report.html and report.html.rstrip().endswith("</body></html>")
    assert r"\label{tab:cgbench-1}" in report.latex and r"26.8 $\pm$ 2.8" in report.latex
    rows = [r for r in report.csv.splitlines()[1:] if r.startswith("1,labels2photo,cyclegan,")]
    assert len(rows) == 1 and ",fooled_rate,20.0,12.5," in rows[0] and ",25,26.8," in rows[0]
    assert (tmp_path / "table-1.md").read_text(encoding="utf-8") == report.markdown

    _studied_run(tracking_uri, "cogan", "other-data", {FOOLED: 1.0, FOOLED + "_participants": 1}, digest="d2")
    with pytest.raises(CgbenchError, match="differ in data or resolution"):
        build_report(tracking_uri, experiment="table-1", tables="1", out_dir=None, log_to_mlflow=False)


# --- a real browser: two participants, a killed server ------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

PAGE = """
const text = (id) => document.getElementById(id).textContent;
return {state: document.body.dataset.state, progress: text("progress"), feedback: text("feedback"),
        left: document.getElementById("left-img").src};
"""
WAIT_FOR = """
const [states, notSrc, done] = arguments;
const ready = () => states.includes(document.body.dataset.state)
    && (document.body.dataset.state !== "trial" || document.getElementById("left-img").src !== notSrc);
if (ready()) return done(document.body.dataset.state);
new MutationObserver((_, observer) => {
  if (ready()) { observer.disconnect(); done(document.body.dataset.state); }
}).observe(document.body, {attributes: true, subtree: true});
"""


def _browser(tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
    from selenium.webdriver.chrome.service import Service

    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and its driver are not installed (apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    return driver


class Server:
    """``cgbench study serve`` as a real process; the port stays the same across restarts."""

    def __init__(self, runs, study_dir: Path, log_dir: Path):
        self.runs, self.study_dir, self.log_dir = runs, study_dir, log_dir
        self.port, self.proc, self.starts = 0, None, 0

    def start(self) -> None:
        self.starts += 1
        out = self.log_dir / f"serve-{self.starts}.log"
        exe = Path(sys.executable).with_name("cgbench")
        args = [str(a) for a in ("study", "serve", "--run", self.runs.ids[0], "--run", self.runs.ids[1],
                                 "--tracking-uri", self.runs.uri, "--study-dir", self.study_dir, "--device", "cpu",
                                 "--port", self.port)]
        with open(out, "w") as log:
            self.proc = subprocess.Popen([str(exe), *args], stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 120
        while not (found := re.search(r"Serving on http://127\.0\.0\.1:(\d+)/", out.read_text())):
            try:
                self.proc.wait(timeout=0.05)  # returns only when the server exited
                pytest.fail(f"the study server exited: {out.read_text()}")
            except subprocess.TimeoutExpired:
                assert time.monotonic() < deadline, f"the study server did not start: {out.read_text()}"
        self.port = int(found.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)


def _participant(driver, server: Server, fakes: set[bytes], choose, use_keys: bool, kill_after: int | None = None):
    """Take one full session in the page. ``choose(phase, index, left_is_fake) -> side``. With
    ``kill_after``, the server is killed after that scored trial is answered, restarted, and the page
    reloaded. Returns [(phase, index, side, left_is_fake)]."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def wait(*states, not_src=""):
        return driver.execute_async_script(WAIT_FOR, list(states), not_src)

    def press(key):
        ActionChains(driver).send_keys(key).perform()

    press(Keys.ENTER) if use_keys else driver.find_element(By.ID, "start").click()
    answers, state = [], wait("trial")
    while state != "done":
        page = driver.execute_script(PAGE)
        if state == "break":
            assert page["progress"] == "Practice done"
            press(Keys.ENTER) if use_keys else driver.find_element(By.ID, "begin").click()
            state = wait("trial")
            continue
        practice = page["progress"].startswith("Practice")
        phase, of = ("practice", PRACTICE_TRIALS) if practice else ("scored", SCORED_TRIALS)
        number = int(re.fullmatch(r"(?:Practice|Trial) (\d+)/" + str(of), page["progress"]).group(1))
        src = page["left"]
        left_is_fake = _get(src)[2] in fakes
        side = choose(phase, number, left_is_fake)
        answers.append((phase, number, side, left_is_fake))
        if use_keys:
            press(Keys.ARROW_LEFT if side == "left" else Keys.ARROW_RIGHT)
        else:
            driver.find_element(By.ID, side).click()
        if phase == "practice":
            wait("feedback")
            real = "right" if left_is_fake else "left"
            text = driver.execute_script(PAGE)["feedback"]
            assert text == ("Right: " if side == real else "Not this time: ") + f"the {real} image is the real one."
            press(Keys.ENTER) if use_keys else driver.find_element(By.ID, "next").click()
        state = wait("trial", "break", "done", not_src=src)
        if phase == "scored" and number == kill_after:
            shown = driver.execute_script(PAGE)
            server.kill()
            server.start()
            driver.refresh()  # the participant reloads: same trial, same images
            state = wait("trial")
            after = driver.execute_script(PAGE)
            assert (after["progress"], after["left"]) == (shown["progress"], shown["left"])
            assert shown["progress"] == f"Trial {number + 1}/{SCORED_TRIALS}"
    assert driver.execute_script(PAGE)["progress"] == "Session complete"
    return answers


def test_two_participants_in_a_browser_with_a_server_killed_mid_session(runs, tmp_path):
    driver = _browser(tmp_path)
    study_dir = tmp_path / "study"
    for run_id in runs.ids:  # made here, where torch is loaded already, so that each server start is quick
        prepare_images(runs.uri, run_id, "labels2photo", study_dir, "cpu")
    server = Server(runs, study_dir, tmp_path)
    try:
        server.start()
        driver.get(server.url)
        a, b = runs.ids
        fakes_a = _fakes(study_dir, a)
        fakes = fakes_a | _fakes(study_dir, b)
        # Keyboard, always the left image; the server is killed after scored trial 15.
        first = _participant(driver, server, fakes, lambda *_: "left", use_keys=True, kill_after=15)
        assert server.starts == 2
        driver.find_element("id", "another").click()
        # Mouse: the generated image in practice and in scored trials 1-10, the real one after.
        second = _participant(driver, server, fakes,
                              lambda phase, i, left_fake: "left" if left_fake == (phase == "practice" or i <= 10)
                              else "right", use_keys=False)
    finally:
        driver.quit()
        server.kill()

    for answers in (first, second):
        assert [(p, i) for p, i, _, _ in answers] == [("practice", i) for i in range(1, 11)] + [
            ("scored", i) for i in range(1, 41)]
    with sqlite3.connect(study_dir / "study.db") as db:  # every answer stored, the one before the kill included
        people = db.execute("SELECT id, run_id FROM participants ORDER BY created").fetchall()
        assert [r for _, r in people] == [a, b]  # each new participant: the method with fewest completed sessions
        for (pid, _), answers in zip(people, (first, second)):
            stored = db.execute("SELECT choice FROM trials WHERE participant_id = ? ORDER BY number", (pid,)).fetchall()
            assert [c for c, in stored] == [side for _, _, side, _ in answers]
    expected_a = 100 * sum(left_fake for p, _, _, left_fake in first if p == "scored") / SCORED_TRIALS

    out = _cli("study", "results", "--tracking-uri", runs.uri, "--study-dir", str(study_dir))
    assert out.exit_code == 0, out.output
    client = MlflowClient(runs.uri)
    assert client.get_run(a).data.metrics[FOOLED] == pytest.approx(expected_a)
    assert client.get_run(b).data.metrics[FOOLED] == pytest.approx(25.0)
    for run_id in (a, b):
        assert client.get_run(run_id).data.metrics[FOOLED + "_participants"] == 1

    out = _cli("report", "--tracking-uri", runs.uri, "--experiment", "runs", "--table", "1", "--out",
               str(tmp_path / "reports"), "--no-log")
    assert out.exit_code == 0, out.output
    assert "| SimGAN (simgan-seed0) | 25.0 (n=1) | 0.7 |" in out.output
    assert f"| CycleGAN (cyclegan-seed0) | {expected_a:.1f} (n=1) | 26.8 ± 2.8 |" in out.output
