"""DDP (issue #6 §8): two processes under torchrun with gloo on the CPU.

Both ranks end with identical LoRA weights, an interrupted and resumed DDP run ends where a
straight one does, only rank 0 writes, and the 2-process run equals the 1-process run with the
same global batch (the loss is a token sum over the global token count and the gradients are
summed, so only float summation order differs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import model_dir
from tests.training.helpers import spoken_rows, tiny_whisper, write_jsonl
from training.data import read_manifest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT", "LOCAL_WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _torchrun(*args: str, nproc: int = 2, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    model_path = tiny_whisper(root / "model", model_dir("whisper-tiny.en"))
    rows = spoken_rows(root / "audio")  # 4 clips = one global batch of 4 (2 per rank)
    train = write_jsonl(rows, root / "train.jsonl")
    _torchrun(str(WORKER), str(model_path), str(train), str(root / "ddp"))
    single = subprocess.run([sys.executable, str(WORKER), str(model_path), str(train), str(root / "single")],
                            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600, check=False)
    assert single.returncode == 0, single.stderr[-3000:]
    return root


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def test_both_ranks_hold_identical_lora_weights(runs):
    r0, r1 = _load(runs / "ddp" / "rank0.pt"), _load(runs / "ddp" / "rank1.pt")
    assert r0["world"] == r1["world"] == 2
    assert r0["straight"].keys() == r1["straight"].keys() and r0["straight"]
    for name in r0["straight"]:
        assert torch.equal(r0["straight"][name], r1["straight"][name]), name


def test_ddp_resume_is_exact(runs):
    for rank in (0, 1):
        state = _load(runs / "ddp" / f"rank{rank}.pt")
        for name, tensor in state["straight"].items():
            assert torch.equal(tensor, state["resumed"][name]), (rank, name)


def test_only_rank0_logs_and_the_loss_falls(runs):
    records = read_manifest(runs / "ddp" / "straight" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # one writer: no duplicate lines
    assert records[-1]["loss"] < records[0]["loss"], [r["loss"] for r in records]
    assert sorted(p.name for p in (runs / "ddp" / "straight" / "checkpoints").iterdir()) == \
        ["phase0-step2", "phase0-step4"]


def test_two_processes_equal_one_with_the_same_global_batch(runs):
    ddp = [r["loss"] for r in read_manifest(runs / "ddp" / "nodrop" / "metrics.jsonl")]
    single = [r["loss"] for r in read_manifest(runs / "single" / "nodrop" / "metrics.jsonl")]
    assert ddp == pytest.approx(single, rel=1e-5), (ddp, single)
    assert ddp[-1] < ddp[0]
    a, b = _load(runs / "ddp" / "rank0.pt")["nodrop"], _load(runs / "single" / "rank0.pt")["nodrop"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6), (name, (a[name] - b[name]).abs().max())


def test_the_distillation_term_is_the_same_with_two_processes(runs):
    """Each rank's summed clip MSE over the global clip count, added up over ranks, is the one-process mean."""
    ddp = read_manifest(runs / "ddp" / "distill" / "metrics.jsonl")
    single = read_manifest(runs / "single" / "distill" / "metrics.jsonl")
    assert all(r["distill"] > 0 for r in single), [r["distill"] for r in single]
    assert [r["distill"] for r in ddp] == pytest.approx([r["distill"] for r in single], rel=1e-4)
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in single], rel=1e-5)
