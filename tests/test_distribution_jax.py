"""Data-parallel training on the jax backend (a Mesh over two CPU devices) equals one device.

JAX sees two CPU devices only with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` set
before it is imported, so the runs happen in a subprocess (``distributed_jax_job.py``).

Tolerance: float64, 1e-10 relative on the final weights after 50 Adam steps. Both runs see the
same global batches, dropout masks and step seeds; the one difference is where the batch sums
are added: one device sums 32 rows in one go, two devices sum 16 rows each and XLA's all-reduce
adds the two halves. Each step's gradient therefore differs by a few float64 ulps (~1e-16
relative); 50 steps of Adam amplify that by well under the 1e6 that separates 1e-16 from 1e-10
(measured: 1.9e-14)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

# one subprocess for the whole module: ~40 s of CPU (13 trainings, each compiled), 80 s of wall
# time on the shared 2-core machine
pytestmark = pytest.mark.slow

JOB = Path(__file__).with_name("distributed_jax_job.py")
STEPS, BATCH = 50, 32
TOLERANCE = 1e-10


@pytest.fixture(scope="module")
def report(real_data_dir_env):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, str(JOB), str(STEPS), str(BATCH)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def real_data_dir_env():
    from conftest import real_data_dir

    folder = real_data_dir()
    if not folder.is_dir():
        pytest.skip(f"real datasets not found at {folder}; set POLYKERAS_DATA_DIR")
    old = os.environ.get("POLYKERAS_DATA_DIR")
    os.environ["POLYKERAS_DATA_DIR"] = str(folder)
    yield folder
    if old is None:
        del os.environ["POLYKERAS_DATA_DIR"]
    else:
        os.environ["POLYKERAS_DATA_DIR"] = old


def test_two_devices_are_really_used(report):
    assert report["devices"] == ["cpu:0", "cpu:1"]
    assert report["one"]["replicas"] == 1 and report["one"]["weight_devices"] == 1
    for run in ("two", "many"):
        assert report[run]["replicas"] == 2
        assert report[run]["weight_devices"] == 2  # weights replicated on both
        assert report[run]["all_reduce"]  # the compiled step adds the halves' gradients
        assert report[run]["iterations"] == STEPS


def test_the_weights_equal_one_device(report):
    assert report["one"]["moved"] > 1e-3  # training changed the weights: the comparison means something
    assert report["weights_two"] <= TOLERANCE, report["weights_two"]
    assert report["weights_many"] <= TOLERANCE, report["weights_many"]  # steps_per_execution=5 on the mesh


def test_logs_and_outputs_equal_one_device(report):
    one, two = report["one"], report["two"]
    assert abs(one["loss"][0] - two["loss"][0]) <= TOLERANCE * abs(one["loss"][0])
    for name, value in one["eval"].items():
        assert abs(value - two["eval"][name]) <= TOLERANCE * max(abs(value), 1.0), name
    assert report["predict_two"] <= TOLERANCE


@pytest.mark.parametrize("variant", ["parity1-bn0", "parity1-bn1", "parity0-bn0", "parity0-bn1", "cnn"])
def test_batch_normalization_jax_dropout_and_convolutions_equal_one_device(report, variant):
    """A small CNN too. BatchNormalization's statistics are the global batch's (XLA all-reduces them), and the
    dropout masks JAX draws from the step's key for the sharded global batch are one device's
    (``jax_threefry_partitionable``)."""
    assert report["variants"][variant] <= TOLERANCE, report["variants"][variant]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_device(tmp_path):
    """Several JAX processes (as on several hosts), here two on this machine with one CPU device
    each: ``initialize()`` from JAX's coordinator environment, the mesh over both processes'
    devices; the weights, logs and predictions equal one device's, and both processes agree."""
    job = JOB.with_name("distributed_jax_processes_job.py")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}",
           "JAX_NUM_PROCESSES": "2"}
    env.pop("XLA_FLAGS", None)
    procs = [subprocess.Popen([sys.executable, str(job), str(tmp_path)], env={**env, "JAX_PROCESS_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    try:
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0], [p.stderr.read()[-2000:] for p in procs]
    first, second = (json.loads((tmp_path / f"process{i}.json").read_text()) for i in (0, 1))
    for report in (first, second):
        assert report["processes"] == 2 and report["replicas"] == 2
        assert report["devices"] == ["cpu:0", "cpu:1"]
        assert report["predict_shape"] == [64, 3]  # gathered from both processes
        for name, values in first["single_history"].items():
            assert max(abs(a - b) for a, b in zip(report["history"][name], values)) <= TOLERANCE, name
        for name, value in first["single_eval"].items():
            assert abs(report["eval"][name] - value) <= TOLERANCE, name
    assert first["weights_vs_single"] <= TOLERANCE, first["weights_vs_single"]
    assert first["predict_vs_single"] <= TOLERANCE
    assert first["weights"] == second["weights"]  # the same replica in both processes
