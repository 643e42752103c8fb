"""The backend group: oneDNN off by default, switchable, and without effect on the model's outputs; the
intra-op threads shared among the run's own jobs; the OpenMP wait policy set before torch loads."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from sign_ctc.run.backend import (TorchBackend, apply_backend, concurrent_jobs, resolve_num_threads,
                                  share_cores_politely, usable_cores)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_backend():
    saved = torch.backends.mkldnn.enabled, torch.get_float32_matmul_precision(), torch.get_num_threads()
    yield
    torch.backends.mkldnn.enabled = saved[0]
    torch.set_float32_matmul_precision(saved[1])
    torch.set_num_threads(saved[2])


@pytest.mark.parametrize("config_name", ["train", "eval", "predict", "diagnose"])
def test_every_entry_point_applies_the_backend_group(make_cfg, restore_backend, config_name):
    extra = ["ckpt_path=x.ckpt"] if config_name in ("eval", "predict") else []
    torch.backends.mkldnn.enabled = True
    apply_backend(make_cfg(*extra, config_name=config_name))
    assert torch.backends.mkldnn.enabled is False
    apply_backend(make_cfg(*extra, "backend.onednn=true", "backend.float32_matmul_precision=high",
                           config_name=config_name))
    assert torch.backends.mkldnn.enabled is True and torch.get_float32_matmul_precision() == "high"


def test_an_unknown_matmul_precision_is_refused(restore_backend):
    with pytest.raises(ValueError, match="highest, high or medium; got 'fast'"):
        TorchBackend(float32_matmul_precision="fast").apply()


def test_onednn_on_and_off_give_the_same_outputs_and_gradients(restore_backend):
    from sign_ctc.models.i3d import I3DTeacher

    torch.manual_seed(0)
    net = I3DTeacher(num_classes=20, dropout=0.0).eval()
    x, presence = torch.randn(3, 57, 6516), torch.ones(3, 57, 4, dtype=torch.bool)
    lengths = torch.tensor([57, 40, 23])
    out = {}
    for enabled in (True, False):
        torch.backends.mkldnn.enabled = enabled
        net.zero_grad()
        logits, out_lengths = net(x, presence, lengths)
        logits.log_softmax(-1).sum().backward()
        out[enabled] = logits.detach(), out_lengths, [p.grad.clone() for p in net.parameters() if p.grad is not None]
    assert torch.equal(out[True][1], out[False][1])
    assert torch.allclose(out[True][0], out[False][0], rtol=1e-4, atol=1e-4)
    for a, b in zip(out[True][2], out[False][2]):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4)


def _joblib_launcher(n_jobs: int):
    """The joblib launcher's own config (hydra-joblib-launcher), as a multirun's job sees it."""
    from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf

    return OmegaConf.structured(JobLibLauncherConf(n_jobs=n_jobs))


def test_auto_threads_share_the_cores_among_a_joblib_sweeps_jobs(make_cfg):
    cfg = make_cfg()
    assert concurrent_jobs(cfg, None, cores=8) == 1
    assert concurrent_jobs(cfg, _joblib_launcher(2), cores=8) == 2
    assert concurrent_jobs(cfg, _joblib_launcher(-1), cores=8) == 8  # joblib: -1 = every core
    assert concurrent_jobs(cfg, _joblib_launcher(-2), cores=8) == 7
    assert resolve_num_threads("auto", 2, 8, 8, environ={}) == (4, "8 usable cores / 2 concurrent jobs")
    assert resolve_num_threads("auto", 8, 8, 8, environ={})[0] == 1
    assert resolve_num_threads("auto", 3, 2, 2, environ={})[0] == 1  # never 0
    assert resolve_num_threads("auto", 2, 8, 8, environ={"OMP_NUM_THREADS": "3"}) == (8, "OMP_NUM_THREADS")


def test_auto_threads_share_the_cores_among_ddp_processes_on_cpu(make_cfg):
    assert concurrent_jobs(make_cfg("trainer=ddp", "trainer.accelerator=cpu"), None, cores=8) == 2
    assert concurrent_jobs(make_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=4"), None, cores=8) == 4
    assert concurrent_jobs(make_cfg("trainer=ddp", "trainer.accelerator=gpu"), None, cores=8) == 1  # ranks on GPUs
    assert concurrent_jobs(make_cfg("trainer=ddp", "trainer.accelerator=cpu"), _joblib_launcher(2), cores=8) == 4


def test_explicit_thread_counts_are_respected_and_logged(restore_backend, caplog, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with caplog.at_level(logging.INFO, logger="sign_ctc.run.backend"):
        assert TorchBackend(num_threads=3).apply(jobs=4, cores=8) == 3
    assert torch.get_num_threads() == 3
    assert "torch threads: 3 (backend.num_threads)" in caplog.text
    caplog.clear()
    torch.set_num_threads(1)  # what torch took from OMP_NUM_THREADS=1 when it loaded
    with caplog.at_level(logging.INFO, logger="sign_ctc.run.backend"):
        assert TorchBackend().apply(jobs=4, cores=8) == 1  # auto: the user's OMP_NUM_THREADS before the jobs
    assert torch.get_num_threads() == 1 and "torch threads: 1 (OMP_NUM_THREADS)" in caplog.text
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert TorchBackend().apply(jobs=4, cores=8) == 2 and torch.get_num_threads() == 2
    # the commands whose stdout is their result (predict, live, export ...) keep the line out of it
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sign_ctc.run.backend"):
        TorchBackend(num_threads=1).apply(announce=False)
    assert "torch threads" not in caplog.text
    with caplog.at_level(logging.DEBUG, logger="sign_ctc.run.backend"):
        TorchBackend(num_threads=1).apply(announce=False)
    assert "torch threads: 1 (backend.num_threads)" in caplog.text
    torch.set_num_threads(3)  # a run alone keeps the count it has (torch's own, or the program's)
    assert TorchBackend().apply(jobs=1, cores=8) == 3 and torch.get_num_threads() == 3
    with pytest.raises(ValueError, match="positive integer or auto; got 0"):
        TorchBackend(num_threads=0).apply()


def test_one_run_alone_keeps_torchs_own_thread_count():
    """`num_threads: auto` with no OMP_NUM_THREADS is what torch picks by itself (every usable core),
    so `make train`'s figures do not change."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    code = ("import torch; before = torch.get_num_threads(); from sign_ctc.run.backend import TorchBackend, usable_cores; "
            "print(before, TorchBackend().apply(), usable_cores())")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    before, applied, cores = map(int, out.stdout.split())
    assert before == applied == cores == usable_cores()


def test_share_cores_politely_keeps_a_users_own_wait_policy():
    env: dict[str, str] = {}
    assert share_cores_politely(env) and env == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}
    for name, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "300000"), ("KMP_BLOCKTIME", "200")):
        env = {name: value}
        assert not share_cores_politely(env) and env == {name: value}


def test_train_py_sets_the_wait_policy_before_torch_loads():
    """The OpenMP runtime reads OMP_WAIT_POLICY once, when torch loads: train.py sets it first thing
    (a child runs it as `python train.py --cfg job` does, then reports what it saw). A user's own
    value is kept (test above)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    code = ("import os, runpy, sys; sys.argv = ['train.py', '--cfg', 'job']\n"
            "try:\n    runpy.run_path('train.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import sign_ctc.run.backend as b\n"
            "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), b._policy_in_time)")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    # torch was loaded by the command, the policy set, and set before torch was imported
    assert out.stdout.strip().splitlines()[-1].split() == ["True", "PASSIVE", "3000", "True"]


def test_console_scripts_set_the_wait_policy_before_torch_loads():
    """An installed `sign-ctc-train` calls sign_ctc.launch.train: importing the entry point loads no
    torch, and the command's torch loads after the policy is set (as `python train.py` does)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    code = ("import os, sys; sys.argv = ['sign-ctc-train', '--cfg', 'job']\n"
            "from sign_ctc.launch import train\n"
            "loaded_by_entry = 'torch' in sys.modules\n"
            "try:\n    train()\nexcept SystemExit:\n    pass\n"
            "import sign_ctc.run.backend as b\n"
            "print(loaded_by_entry, 'torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), b._policy_in_time)")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1].split() == ["False", "True", "PASSIVE", "3000", "True"]
