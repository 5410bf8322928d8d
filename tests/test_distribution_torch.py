"""Data-parallel training on the torch backend (torch.distributed, gloo, two processes
launched by torchrun) equals one device.

``distributed_torch_job.py`` runs under ``python -m torch.distributed.run --nproc-per-node 2``;
each rank writes a JSON report. Tolerance: float64, 1e-10 relative on the weights after 100
Adam steps (2 epochs of 50). Both replicas see the global batches of one device, split in
halves, and the same dropout masks (drawn for the global batch, each replica keeping its rows);
each replica's gradient is that of its half's mean loss and the two are averaged by one
all-reduce, so the only difference from one device is the order of the float64 additions
(~1e-16 per step; measured ~4e-16 after 100 steps)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

JOB = Path(__file__).with_name("distributed_torch_job.py")
TOLERANCE = 1e-10


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchrun")
    # --standalone: a local rendezvous on a free port; a collective that waits 60 s fails
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(JOB), str(folder)], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "POLYKERAS_DISTRIBUTED_TIMEOUT": "60"})
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def reports(out):
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_two_processes_each_take_half_of_every_batch(reports):
    for rank, report in enumerate(reports):
        assert report["cluster"] == [rank, 2, "torchrun"]
        assert report["devices"] == ["cpu:0", "cpu:1"]
        assert report["parity1"]["replicas"] == 2
        # training and validation batches of 16, evaluation batches of 32: halved
        assert report["rows"] == [[16, 8], [32, 16]]  # (the CNN's batches of 32 come after)


@pytest.mark.parametrize("masks", ["parity1", "parity0"])  # the core's dropout masks, torch's generator
def test_the_weights_equal_one_device(reports, masks):
    run = reports[0][masks]
    assert run["moved"] > 1e-3
    assert run["iterations"] == run["single"]["iterations"] == 100
    assert run["weights_vs_single"] <= TOLERANCE, run["weights_vs_single"]


def test_steps_per_execution_equals_one_device(reports):
    assert reports[0]["steps_per_execution"] <= TOLERANCE, reports[0]["steps_per_execution"]


def test_sample_weights_and_weighted_metrics_equal_one_device(reports):
    assert reports[0]["weighted"] <= TOLERANCE, reports[0]["weighted"]
    single = reports[0]["weighted_single_history"]
    assert set(single) == {"loss", "accuracy"}
    for report in reports:  # the weighted accuracy's statistics are all-reduced: global on every rank
        for name, values in single.items():
            np.testing.assert_allclose(report["weighted_history"][name], values, rtol=TOLERANCE, err_msg=name)


def test_a_small_cnn_equals_one_device(reports):
    assert reports[0]["cnn"] <= TOLERANCE, reports[0]["cnn"]


@pytest.mark.parametrize("masks", ["parity1", "parity0"])
def test_the_replicas_hold_the_same_weights(out, masks):
    a, b = (np.load(out / f"weights{r}-{masks}.npz") for r in (0, 1))
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("masks", ["parity1", "parity0"])
def test_logs_are_global(reports, masks):
    single = reports[0][masks]["single"]
    for report in reports:  # every rank reports the global logs, equal to one device's
        run = report[masks]
        for name, values in single["history"].items():
            np.testing.assert_allclose(run["history"][name], values, rtol=TOLERANCE, err_msg=name)
        for name, value in single["eval"].items():
            assert abs(run["eval"][name] - value) <= TOLERANCE * max(abs(value), 1.0), name


def test_only_rank_0_shows_progress_and_writes_files(reports, out):
    assert "50/50" in reports[0]["parity1"]["printed"]
    assert reports[1]["parity1"]["printed"] == ""
    assert sorted(p.name for p in out.glob("saved-by-*")) == ["saved-by-rank0-parity0.weights.npz",
                                                               "saved-by-rank0-parity1.weights.npz"]
    assert sorted(p.name for p in out.glob("csv-by-*")) == ["csv-by-rank0-parity0.csv", "csv-by-rank0-parity1.csv"]
    assert (out / "csv-by-rank0-parity1.csv").read_text().count("\n") == 3  # header and 2 epochs


def test_a_batch_that_does_not_divide_is_refused(reports):
    for report in reports:
        assert "batch of 15 samples cannot be split evenly over 2 replicas" in report["uneven"]
        assert "batch of 15 samples cannot be split evenly over 2 replicas" in report["uneven_evaluate"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two fresh processes: ~13 s on the shared 2-core machine
def test_a_killed_replica_stops_the_other_with_an_error_naming_it(tmp_path):
    """Rank 1 dies by SIGKILL mid-epoch; rank 0 fails at its next all-reduce with a
    ReplicaLostError naming rank 1, well within 60 s (gloo sees the closed connection)."""
    job = JOB.with_name("distributed_torch_lost_job.py")
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "POLYKERAS_DISTRIBUTED_TIMEOUT": "60", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(job), str(tmp_path)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes[1] == -9
    assert codes[0] == 3, procs[0].stderr.read()[-3000:]
    report = json.loads((tmp_path / "lost.json").read_text())
    assert report["type"] == "ReplicaLostError"
    assert "replica 0 of 2: the gradient all-reduce failed, rank 1 has stopped" in report["message"]
    assert report["after_s"] < 60
