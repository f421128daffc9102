"""Several processes, one run: `cgbench run --nproc 2` with gloo on the CPU, through the real CLI;
the sampler's shards; the sweep's GPU placement."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mlflow import MlflowClient

from conftest import HANG_SECONDS, assert_one_line_error, wait_until
from cgbench.cli import main
from cgbench.data.sampler import PairedSampler, UnpairedSampler
from cgbench.methods.cyclegan import CycleGAN
from cgbench.sweep import gpu_slots, placed_device

LOSS_KEYS = [f"loss/{t}" for t in CycleGAN.terms]
ITERS = 60
TRAIN_ARGS = ["--preset", "tiny", "--iters", str(ITERS), "--set", "checkpoint_every=5", "--experiment", "ddp",
              "--no-progress"]
CPU = torch.device("cpu")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cgbench", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in LOSS_KEYS}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("ddp")
    return root, f"sqlite:///{root}/mlflow.db"


@pytest.fixture(scope="module")
def reference(synth_dir, store) -> str:
    """An uninterrupted two-process run; its id."""
    root, uri = store
    out = subprocess.run(_cli("run", "--nproc", "2", "--data", str(synth_dir), "--tracking-uri", uri, *TRAIN_ARGS),
                         capture_output=True, text=True, cwd=root, env=_env(), timeout=HANG_SECONDS)
    assert out.returncode == 0, out.stderr
    (run_id,) = re.findall(r"MLflow run ([0-9a-f]{32})", out.stdout)
    assert out.stdout.count("MLflow run") == 1 and "Traceback" not in out.stderr  # rank 0 alone speaks
    return run_id


def test_two_processes_log_each_step_once_with_identical_weights(reference, store):
    client = MlflowClient(store[1])
    run = client.get_run(reference)
    assert run.info.status == "FINISHED"
    for key, history in _history(client, reference).items():
        assert [s for s, _ in history] == list(range(1, ITERS + 1)), key
    tags = run.data.tags
    assert tags["cgbench.world_size"] == "2"
    digests = tags["cgbench.ddp_weight_digests"].split(",")
    assert len(digests) == 2 and digests[0] == digests[1] and re.fullmatch(r"[0-9a-f]{12}", digests[0])
    assert run.data.params["batch_size"] == "1" and tags["cgbench.speed.parallel_halves"] == "false"


def test_ctrl_c_checkpoints_every_rank_and_resume_reproduces_the_uninterrupted_run(reference, synth_dir, store):
    root, uri = store
    # A terminal's Ctrl-C goes to the whole foreground process group: the launcher and its children.
    proc = subprocess.Popen(_cli("run", "--nproc", "2", "--data", str(synth_dir), "--tracking-uri", uri, *TRAIN_ARGS),
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)
    run_id = None
    for line in proc.stdout:
        if match := re.search(r"MLflow run ([0-9a-f]{32})", line):
            run_id = match.group(1)
            break
    assert run_id, proc.stderr.read()
    wait_until(lambda: any(root.glob(f"mlruns/*/{run_id}/artifacts/checkpoints/step_00000010.pt")), proc,
               "the checkpoint of iteration 10 was written")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=HANG_SECONDS)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("error:") == 1, err  # one line, from rank 0
    assert f"cgbench run --resume {run_id}" in err
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "KILLED"
    interrupted_at = int(re.search(r"interrupted at iteration (\d+)", err).group(1))
    assert interrupted_at < ITERS

    done = subprocess.run(_cli("run", "--resume", run_id, "--nproc", "2", "--tracking-uri", uri, "--no-progress"),
                          capture_output=True, text=True, cwd=root, env=_env(), timeout=HANG_SECONDS)
    assert done.returncode == 0, done.stderr
    assert f"Resuming run {run_id} at iteration {interrupted_at}" in done.stdout
    assert client.get_run(run_id).info.status == "FINISHED"
    resumed = _history(client, run_id)
    for key, history in resumed.items():
        assert [s for s, _ in history] == list(range(1, ITERS + 1)), key
    # Same seed, same numbers: the sampler, the per-rank pools and their RNG resume exactly.
    assert resumed == _history(client, reference)


GROUP_THREADS = ("pt_gloo_runloop", "gloo_tcp_loop", "pt_tcpstore_uv")  # gloo's workers and loop, the store

TEARDOWN_PROBE = """
import os, sys
from cgbench.config import resolve
from cgbench.distributed import free_port
from cgbench.training import train

def threads():
    return sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))

def fail(iteration, total):
    raise RuntimeError("stop")

os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", LOCAL_RANK="0",
                  WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
config = resolve("tiny", data=sys.argv[1], iters=2)
train(config, tracking_uri=sys.argv[2], progress=False, echo=lambda *_: None)
print("finished:", threads())
try:
    train(config, tracking_uri=sys.argv[2], progress=False, echo=lambda *_: None, on_progress=fail)
except RuntimeError:
    print("failed:", threads())
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads through Linux's /proc")
def test_the_process_group_and_its_threads_end_with_training(synth_dir, tracking_uri):
    """A run in a process group frees the group when it ends, finished or failed: no native thread
    of the group outlives training into interpreter shutdown (where it aborted the process)."""
    out = subprocess.run([sys.executable, "-c", TEARDOWN_PROBE, str(synth_dir), tracking_uri], capture_output=True,
                         text=True, env=_env(), timeout=HANG_SECONDS)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    assert set(lines) == {"finished", "failed"}
    for threads in lines.values():
        assert not any(name in threads for name in GROUP_THREADS), threads


@pytest.mark.parametrize("nproc", ["1", "3"])
def test_resume_on_another_number_of_processes_is_one_line_exit_2(nproc, reference, store):
    out = CliRunner().invoke(main, ["run", "--resume", reference, "--nproc", nproc, "--tracking-uri", store[1],
                                    "--no-progress"])
    assert_one_line_error(out, "trained on 2 processes", "--nproc 2")


def test_method_without_ddp_support_is_one_line_exit_2(synth_dir, tracking_uri):
    out = CliRunner().invoke(main, ["run", "--nproc", "2", "--method", "cogan", "--preset", "tiny", "--data",
                                    str(synth_dir), "--tracking-uri", tracking_uri, "--no-progress"])
    assert_one_line_error(out, "cogan", "drop --nproc")
    assert MlflowClient(tracking_uri).get_experiment_by_name("cgbench") is None  # nothing recorded


def test_nproc_must_be_positive(synth_dir, tracking_uri):
    out = CliRunner().invoke(main, ["run", "--nproc", "0", "--preset", "tiny", "--data", str(synth_dir),
                                    "--tracking-uri", tracking_uri])
    assert_one_line_error(out, "--nproc must be >= 1")


# --- the sampler's shards -------------------------------------------------------------------


def _scenes(n: int = 12, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return x, x.flip(0).clone()


def _sampler_before_ddp():
    """cgbench/data/sampler.py as it was before it learnt about ranks (git), or None."""
    root = Path(__file__).resolve().parent.parent
    old = subprocess.run(["git", "-C", str(root), "show", "e7477c1:cgbench/data/sampler.py"], capture_output=True,
                         text=True)
    if old.returncode != 0:
        return None
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"cgbench_sampler_before_ddp_{os.getpid()}.py"
    path.write_text(old.stdout)
    spec = importlib.util.spec_from_file_location("cgbench_sampler_before_ddp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path.unlink()
    return module


@pytest.mark.parametrize("paired", [False, True])
def test_one_process_batches_are_those_of_before(paired):
    old = _sampler_before_ddp()
    if old is None:
        pytest.skip("no git history here")
    x, y = _scenes()
    new_cls, old_cls = (PairedSampler, old.PairedSampler) if paired else (UnpairedSampler, old.UnpairedSampler)
    for batch_size in (1, 3):
        new, before = new_cls(x, y, 8, batch_size, seed=5), old_cls(x, y, 8, batch_size, seed=5)
        assert new.steps_per_epoch == before.steps_per_epoch
        for step in range(10):
            for a, b in zip(new.batch(step, CPU), before.batch(step, CPU)):
                assert torch.equal(a, b), (batch_size, step)


@pytest.mark.parametrize("cls", [UnpairedSampler, PairedSampler])
def test_ranks_take_disjoint_blocks_of_the_global_batch(cls):
    x, y = _scenes()
    ranks = [cls(x, y, 8, 2, seed=1, rank=r, world_size=2) for r in range(2)]
    whole = cls(x, y, 8, 4, seed=1)  # one process drawing the global batch of 2 x 2
    assert ranks[0].steps_per_epoch == ranks[1].steps_per_epoch == whole.steps_per_epoch == 3
    for step in range(7):
        parts = [s.batch(step, CPU) for s in ranks]
        for i in range(2):  # x, then y
            assert torch.equal(torch.cat([p[i] for p in parts]), whole.batch(step, CPU)[i]), step
        xs = [set(s.indices(step)[0].tolist()) for s in ranks]
        assert len(xs[0]) == len(xs[1]) == 2 and not xs[0] & xs[1]


def test_an_epoch_covers_x_once_across_the_ranks():
    x, y = _scenes()
    ranks = [UnpairedSampler(x, y, 8, 2, seed=0, rank=r, world_size=3) for r in range(3)]
    steps = ranks[0].steps_per_epoch
    assert steps == 2
    seen = np.concatenate([s.indices(step)[0] for step in range(steps) for s in ranks])
    assert sorted(seen.tolist()) == list(range(12))


def test_too_few_images_for_the_processes_is_a_config_error():
    from cgbench.errors import ConfigError

    x, y = _scenes(n=3)
    with pytest.raises(ConfigError, match="at least 4 training images"):
        UnpairedSampler(x, y, 8, 2, seed=0, rank=0, world_size=2)


# --- the sweep's GPU placement ----------------------------------------------------------------


def test_gpu_slots_give_each_concurrent_child_its_own_gpu():
    assert gpu_slots(jobs=4, gpu_count=4) == [0, 1, 2, 3]
    assert gpu_slots(jobs=2, gpu_count=8) == [0, 1]
    assert gpu_slots(jobs=5, gpu_count=2) == [0, 1, 0, 1, 0]  # more children than GPUs: shared in turn
    assert gpu_slots(jobs=4, gpu_count=1) == [] and gpu_slots(jobs=4, gpu_count=0) == []  # as before
    assert gpu_slots(jobs=1, gpu_count=4) == []
    assert placed_device("auto", 3) == "cuda:3" and placed_device("cuda", 1) == "cuda:1"
    assert placed_device("cpu", 1) is None and placed_device("cuda:2", 0) is None  # a pinned device stays
