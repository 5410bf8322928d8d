"""Data parallelism for the JAX backend: ``jax.sharding`` inside the one jitted step.

:func:`distribute` puts a :class:`~polykeras_jax.program.JaxProgram` on a
``jax.sharding.Mesh`` of the chosen devices with one axis, ``"data"``: the whole
state (weights, optimizer slots, metric sums) is replicated on every device and
each batch is sharded along that axis, device ``i`` of ``N`` holding the rows
:func:`polykeras.distribution.replica_rows` gives it. The program's jitted
functions do not change: XLA's SPMD partitioner splits the batch's work and
inserts the all-reduces that the global loss (a mean over the *global* batch)
and its gradients need, so the update is the single device's, summed in another
order. BatchNormalization's batch statistics are global for the same reason.

Several processes (several hosts): :func:`initialize` calls
``jax.distributed.initialize`` (CPU collectives through gloo); the backend uses this
process's devices, the mesh spans all processes' devices. Process 0's initial
weights and fit seed are broadcast, every process holds the same global batch (the
core decides it) and hands its own rows to ``jax.make_array_from_callback``; logs
and weights are read from this process's replica, predictions gathered from all.
Tested with two CPU processes on one machine; not on several hosts or GPUs.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from polykeras.distribution import Cluster, DataParallel, check_batch


def device_names(device_type: str | None = None) -> list[str]:
    """``"platform:index"`` of every device of one platform (default: JAX's default one), all
    processes' devices included, in ``jax.devices`` order."""
    try:
        devices = jax.devices(device_type) if device_type else jax.devices()
    except RuntimeError:  # no such platform here
        return []
    return [f"{d.platform}:{i}" for i, d in enumerate(devices)]


def _device(name: str):
    platform, _, index = name.partition(":")
    return jax.devices(platform)[int(index or 0)]


def distribute(program, value: DataParallel):
    """``program`` replicated over ``value``'s devices (default: every device of the
    program's platform), its batches sharded; returns the same program."""
    devices = value.devices_for(device_names(program.device.platform))
    program.shard(Mesh(np.array([_device(d) for d in devices]), (DataParallel.batch_dim_name,)))
    return program


def initialize(cluster: Cluster) -> None:
    """Join a run of several JAX processes (``jax.distributed.initialize``); CPU devices of
    different processes talk through gloo (JAX has no CPU collectives across processes without it)."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=cluster.coordinator, num_processes=cluster.num_processes,
                               process_id=cluster.process_id)


class BatchSharding:
    """Places batches on a mesh: rows split along its data axis (for ``train_steps``' stacked
    batches, the second axis), each device getting its contiguous slice."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.replicas = mesh.size
        axis = DataParallel.batch_dim_name
        self.flat = NamedSharding(mesh, P(axis))
        self.stacked = NamedSharding(mesh, P(None, axis))
        self.replicated = NamedSharding(mesh, P())
        # XLA:CPU with several host devices deadlocks in its all-reduce rendezvous when many
        # sharded steps are queued (jax 0.10.2, 2 cores: 136 queued mnist-mlp steps hang for
        # 40 s and abort, 20 do not), so on CPU meshes each step waits for the one before.
        self.blocking = all(d.platform == "cpu" for d in mesh.devices.flat)

    def replicate(self, tree):
        """``tree`` (arrays on one device, or NumPy) replicated on the mesh; with several processes
        process 0's values (what torch's broadcast of the initial weights does)."""
        host = jax.tree.map(np.asarray, tree)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            host = multihost_utils.broadcast_one_to_all(host)
        return jax.device_put(host, self.replicated)

    @staticmethod
    def host(a) -> np.ndarray:
        """A replicated array as NumPy (with several processes: this process's copy)."""
        return np.asarray(a if a.is_fully_addressable else a.addressable_data(0))

    @staticmethod
    def gather(a) -> np.ndarray:
        """A batch-sharded output as NumPy, all processes' rows."""
        if a.is_fully_addressable:
            return np.asarray(a)
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))

    def broadcast_seed(self, seed: int) -> int:
        if jax.process_count() == 1:
            return seed
        from jax.experimental import multihost_utils

        return int(multihost_utils.broadcast_one_to_all(np.int64(seed)))

    def settle(self, state) -> None:
        """Wait for ``state`` (a step's output) on a CPU mesh (see ``blocking``); else nothing."""
        if self.blocking:
            jax.block_until_ready(state)

    def __call__(self, batch, stacked: bool = False):
        """One array, or a tuple of them (``None`` entries stay ``None``), as global arrays."""
        if batch is None:
            return None
        if isinstance(batch, tuple):
            return tuple(self(a, stacked) for a in batch)
        a = np.asarray(batch)
        check_batch(a.shape[1 if stacked else 0], self.replicas)
        sharding = self.stacked if stacked else self.flat
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])
