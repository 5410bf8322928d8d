"""BackupAndRestore across replica counts: a data-parallel run backed up on 2 replicas and
interrupted resumes on 1 device -- and a 1-device run on 2 replicas -- and ends with the weights
and per-step losses of the uninterrupted run (torch: 2 gloo processes; jax: 2 host devices).

The backup holds the weights, the optimizer's state and where the fit stood (epoch, step, the
fit's seed); the global batches, their order and the step seeds do not depend on the replica
count, so the only difference is the all-reduce's summation order: float64 within L4's 1e-10
(:data:`polykeras_conformance.tolerances.TABLE`), measured ~1e-15. ``distributed_resume_job.py``
runs every case of one backend in one launch; the slow test kills the processes with SIGKILL."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from polykeras.backends import backend_infos

JOB = Path(__file__).with_name("distributed_resume_job.py")
TOLERANCE = 1e-10  # L4's float64 bound (per-step loss and final weights)
STOP, STEPS = 7, 15  # stopped after step 7 of 15; the backup before it is after step 3


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out, *args, processes=2, env=None, timeout=180):
    """The job as ``processes`` processes joined by torchrun's variables (1: plainly); exit codes."""
    base = {**os.environ, "POLYKERAS_DISTRIBUTED_TIMEOUT": "60", "OMP_NUM_THREADS": "1", **(env or {})}
    if processes > 1:
        base.update(WORLD_SIZE=str(processes), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    logs = [out / f"log-{'-'.join(a for a in args if a != str(out))}-{r}.txt" for r in range(processes)]
    procs = []
    for r, log in enumerate(logs):
        rank = {"RANK": str(r), "LOCAL_RANK": str(r)} if processes > 1 else {}
        with open(log, "w") as stream:
            procs.append(subprocess.Popen([sys.executable, str(JOB), *args], env={**base, **rank},
                                          stdout=stream, stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return codes, "\n".join(log.read_text(errors="replace")[-2000:] for log in logs)


def relative(a, b) -> float:
    return max(float(np.max(np.abs(np.subtract(u, v))) / np.max(np.abs(u))) for u, v in zip(a, b))


def loss_diff(losses, reference) -> float:
    """The largest relative difference of per-step losses ``[[step, loss], ...]`` from the reference's."""
    ref = {int(step): loss for step, loss in reference}
    return max(abs(loss - ref[int(step)]) / abs(ref[int(step)]) for step, loss in losses)


def check_report(report):
    weights, losses = report["single"]
    assert [int(s) for s, _ in losses] == list(range(1, STEPS + 1))
    for name in ("two", "two-to-one", "one-to-two"):
        w, found = report[name]
        # an uninterrupted run has every step; a resumed one the steps after the backup's (step 3)
        assert [int(s) for s, _ in found] == list(range(1 if name == "two" else 4, STEPS + 1)), name
        assert relative(weights, w) <= TOLERANCE, (name, relative(weights, w))
        assert loss_diff(found, losses) <= TOLERANCE, (name, loss_diff(found, losses))
    for name in ("two-to-one", "one-to-two"):  # the interrupted run left its backup, the resumed one removed it
        assert report[f"{name} backup"] == ["backup.polykeras"], report[f"{name} backup"]
        assert report["left"][name] == []


@pytest.mark.skipif(not backend_infos()["torch"].installed, reason="torch is not installed")
def test_torch_resumes_on_another_number_of_processes(tmp_path):
    """One launch of 2 gloo processes (~5 s): rank 0 trains alone for the 1-device runs."""
    codes, logs = launch(tmp_path, "torch", str(tmp_path))
    assert codes == [0, 0], logs
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["processes"] == 2
    check_report(report)


@pytest.mark.skipif(not backend_infos()["jax"].installed, reason="jax is not installed")
def test_jax_resumes_on_another_number_of_devices(tmp_path):
    """One process with 2 host devices (~10 s)."""
    codes, logs = launch(tmp_path, "jax", str(tmp_path), processes=1,
                         env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"})
    assert codes == [0], logs
    check_report(json.loads((tmp_path / "report.json").read_text()))


@pytest.mark.skipif(not backend_infos()["torch"].installed, reason="torch is not installed")
def test_torch_killed_with_sigkill_resumes_on_another_number_of_processes(tmp_path):
    """Four launches, six processes (~9 s). The processes die by SIGKILL after step 7 (the backup rank 0 wrote after step 3 is whole:
    one file, no temporary left); restarted with another process count, another global seed, they
    end as one device's uninterrupted run."""
    for folder, before, after in (("two-to-one", 2, 1), ("one-to-two", 1, 2)):
        codes, logs = launch(tmp_path, "torch-kill", str(tmp_path), folder, "killed", processes=before)
        assert codes[0] == -signal.SIGKILL, logs
        assert all(c in (-signal.SIGKILL, 1) for c in codes[1:]), logs  # or lost rank 0 first
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["backup.polykeras"]
        killed_losses = json.loads((tmp_path / "losses-rank0.json").read_text())
        assert [int(s) for s, _ in killed_losses] == list(range(1, STOP + 1))
        codes, logs = launch(tmp_path, "torch-kill", str(tmp_path), folder, "resumed", processes=after)
        assert codes == [0] * after, logs
        found = json.loads((tmp_path / f"{folder}.json").read_text())
        if "single" in found:
            reference = found["single"]
        weights, losses = found["resumed"]
        assert found["backup"] == ["backup.polykeras"] and found["left"] == []
        assert [int(s) for s, _ in losses] == list(range(4, STEPS + 1))
        assert relative(reference[0], weights) <= TOLERANCE, relative(reference[0], weights)
        assert loss_diff(losses, reference[1]) <= TOLERANCE
        assert loss_diff(killed_losses, reference[1]) <= TOLERANCE


class _Program:
    num_replicas = 2

    def __init__(self, chief_value):
        self.chief_value = chief_value

    def broadcast_seed(self, seed):
        return self.chief_value


def test_a_process_that_finds_another_backup_than_rank_0_stops(tmp_path, monkeypatch):
    """A backup_dir that is not shared: rank 1 finds no backup where rank 0 found one (rank 0's
    answer faked: the program's broadcast returns it)."""
    import polykeras
    from polykeras import distribution as dist

    monkeypatch.setattr(dist, "_cluster", dist.Cluster(1, 2))
    callback = polykeras.callbacks.BackupAndRestore(tmp_path)
    callback.set_model(type("M", (), {"_program": _Program(12345)})())
    with pytest.raises(RuntimeError, match="process 1 found no backup in .* but rank 0 found another.*share"):
        callback.on_train_begin()
    callback.set_model(type("M", (), {"_program": _Program(2 ** 62 - 1)})())  # rank 0 found none either
    callback.on_train_begin()
