"""polykeras.distribution, the framework-free half: slicing, environment, refusals.

The backends' data-parallel runs (several devices or processes) are in
``test_distribution_jax.py`` and ``test_distribution_torch.py``."""

import numpy as np
import pytest

import polykeras
from polykeras import distribution as dist
from polykeras.layers import Dense
from polykeras.models import Sequential


def test_replica_rows_are_contiguous_and_cover_the_batch():
    rows = [dist.replica_rows(12, 3, i) for i in range(3)]
    assert rows == [slice(0, 4), slice(4, 8), slice(8, 12)]
    assert sorted(i for r in rows for i in range(12)[r]) == list(range(12))


def test_a_batch_that_does_not_divide_is_refused():
    with pytest.raises(ValueError, match="batch of 7 samples cannot be split evenly over 2 replicas"):
        dist.replica_rows(7, 2, 0)


class _Program:
    num_replicas = 2


def test_check_batches_looks_at_the_last_partial_batch():
    dist.check_batches(_Program(), 100, 32)  # 3 x 32 + 4
    with pytest.raises(ValueError, match="batch of 5 samples"):
        dist.check_batches(_Program(), 101, 32)  # last batch of 5
    with pytest.raises(ValueError, match="batch of 33 samples"):
        dist.check_batches(_Program(), 100, 33)
    dist.check_batches(object(), 101, 33)  # one replica: anything goes


def test_cluster_from_torchrun_environment():
    env = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    assert dist.cluster_from_env(env) == dist.Cluster(1, 4, 1, "10.0.0.1:29500", "torchrun")


def test_cluster_from_jax_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "host:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert dist.cluster_from_env(env) == dist.Cluster(1, 2, 0, "host:1234", "jax")


def test_cluster_alone_and_bad_environment():
    assert dist.cluster_from_env({}) == dist.Cluster()
    with pytest.raises(ValueError, match="WORLD_SIZE='two' must be an integer"):
        dist.cluster_from_env({"WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="process 3 of 2 does not exist"):
        dist.initialize(cluster=dist.Cluster(3, 2))


def test_initialize_alone_needs_no_backend():
    assert dist.initialize(cluster=dist.Cluster()) == dist.Cluster()
    assert dist.is_chief()


def test_data_parallel_arguments():
    assert dist.DataParallel(num_replicas=2).devices_for(["cpu:0", "cpu:1", "cpu:2"]) == ("cpu:0", "cpu:1")
    assert dist.DataParallel().devices_for(["cpu:0", "cpu:1"]) == ("cpu:0", "cpu:1")
    assert dist.DataParallel(devices=["cpu:1"]).num_replicas == 1
    with pytest.raises(ValueError, match="only 1 device"):
        dist.DataParallel(num_replicas=2).devices_for(["cpu:0"])
    with pytest.raises(ValueError, match="not available"):
        dist.DataParallel(devices=["gpu:0"]).devices_for(["cpu:0"])
    with pytest.raises(ValueError, match="twice"):
        dist.DataParallel(devices=["cpu:0", "cpu:0"])
    with pytest.raises(ValueError, match="num_replicas must be >= 1"):
        dist.DataParallel(num_replicas=0)


def test_set_distribution():
    assert dist.distribution() is None
    d = dist.DataParallel(num_replicas=1)
    dist.set_distribution(d)
    try:
        assert dist.distribution() is d
    finally:
        dist.set_distribution(None)
    with pytest.raises(TypeError, match="DataParallel or None"):
        dist.set_distribution("data")


def _model():
    polykeras.utils.set_random_seed(0)
    model = Sequential([polykeras.Input((3,)), Dense(2)])
    return model


def test_a_backend_without_distribution_is_refused_by_name():
    model = _model()
    model.compile(optimizer="sgd", loss="mse", backend="numpy", distribution=dist.DataParallel(num_replicas=1))
    with pytest.raises(NotImplementedError, match="backend 'numpy' does not support data-parallel training"):
        model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)


def test_compile_refuses_something_else_than_data_parallel():
    with pytest.raises(TypeError, match="DataParallel"):
        _model().compile(optimizer="sgd", loss="mse", distribution="mirrored")


def test_list_devices_of_a_backend_without_the_method():
    assert dist.list_devices(backend="numpy") == ["cpu"]
    assert dist.list_devices("gpu", backend="numpy") == []
