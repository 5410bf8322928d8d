"""Data parallelism for the torch backend: ``torch.distributed``, one process per replica.

Launch one process per replica with ``torchrun --nproc-per-node N script.py``; the script
calls :func:`polykeras.distribution.initialize` (which calls :func:`initialize` here: gloo on
CPU, NCCL on CUDA, each process on GPU ``LOCAL_RANK``) and trains with a
:class:`polykeras.distribution.DataParallel`. Every process runs the core's Trainer on the
same global batches (rank 0's fit seed is broadcast); :class:`Replicas` gives each its rows.

Why not ``DistributedDataParallel``: DDP wraps an ``nn.Module`` and hooks its ``backward``;
a :class:`~polykeras_torch.program.TorchProgram` has no module -- its weights are leaf
tensors and one step is ``torch.autograd.grad`` then a ``_foreach`` optimizer update. So the
gradients are averaged the way DDP does it with a single bucket: flattened into one buffer,
one ``all_reduce(SUM)``, divided by the replica count (exact for a power of two), unflattened.
What DDP adds over that -- several buckets overlapped with the backward pass -- is a speed-up
only; it is not done here.

Each replica's loss is Keras's mean over its ``B/N`` rows, so the mean of the replicas'
gradients is the gradient of the mean over the global ``B`` rows: one device's, summed in
another order. Logs (:meth:`Replicas.results`) are all-reduced sums, so they are global too.
"""

from __future__ import annotations

import atexit
import datetime
import os

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from polykeras.distribution import Cluster, DataParallel, replica_rows
from polykeras.metrics.statistics import SummedStatistics, ordered
from polykeras.program import MeanAccumulator

#: Seconds a collective waits for the other replicas before failing (``POLYKERAS_DISTRIBUTED_TIMEOUT``).
DEFAULT_TIMEOUT_S = 300


def initialize(cluster: Cluster, device_type: str) -> None:
    """Join the process group of ``cluster`` (no-op when this process already has)."""
    if dist.is_initialized():
        if dist.get_world_size() != cluster.num_processes:
            raise RuntimeError(f"torch.distributed is already initialized with {dist.get_world_size()} processes, "
                               f"but the environment says {cluster.num_processes}")
        return
    if device_type == "cuda":
        torch.cuda.set_device(cluster.local_rank)
    if cluster.launcher != "torchrun" and not cluster.coordinator:
        raise ValueError("several torch processes need a coordinator address (MASTER_ADDR/MASTER_PORT, which "
                         "torchrun sets)")
    timeout = datetime.timedelta(seconds=int(os.environ.get("POLYKERAS_DISTRIBUTED_TIMEOUT", DEFAULT_TIMEOUT_S)))
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo",
                            init_method="env://" if cluster.launcher == "torchrun" else f"tcp://{cluster.coordinator}",
                            rank=cluster.process_id, world_size=cluster.num_processes, timeout=timeout)
    # Leave the group while the interpreter is still whole: a gloo group left to the interpreter's
    # teardown can abort the process ("terminate called without an active exception", exit -6)
    # after its work is done (pytorch/pytorch#190489). A no-op if the user left it already.
    atexit.register(_leave_group)


def _leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def device_names(device_type: str, local: list[str]) -> list[str]:
    """One device per process of the group (``"cpu:0"``, ``"cpu:1"``, ... or ``"cuda:<rank>"``);
    without a group, this machine's ``local`` devices of ``device_type``."""
    if dist.is_initialized():
        return [f"{device_type}:{rank}" for rank in range(dist.get_world_size())]
    return [d for d in local if d.split(":")[0] == device_type]


def distribute(program, value: DataParallel, local: list[str]):
    """``program`` as this process's replica of ``value`` (all of the group's processes)."""
    from polykeras import distribution

    found = distribution.cluster()
    if not dist.is_initialized() and found.num_processes > 1:
        initialize(found, program.device.type)
    world = dist.get_world_size() if dist.is_initialized() else 1
    devices = value.devices_for(device_names(program.device.type, local))
    if len(devices) != world:
        raise ValueError(f"the torch backend runs one process per replica: {value!r} asks for {len(devices)} "
                         f"replica(s) but this run has {world} process(es); start them with torchrun "
                         f"--nproc-per-node {len(devices)}")
    if world == 1:
        return program  # one replica: the program as it is
    stateful = sorted({layer.kind for layer in program.spec.layers if layer.kind == "BatchNormalization"})
    if stateful and program.training is not None:
        raise NotImplementedError(f"{', '.join(stateful)} under DataParallel is not supported by the torch backend "
                                  "yet: its batch statistics would be each replica's, not the global batch's "
                                  "(the jax backend computes them globally)")
    program.replicate(Replicas(world, dist.get_rank(), program.device))
    return program


class ReplicaLostError(RuntimeError):
    """A collective failed: another replica stopped (or hangs past the timeout)."""


class Replicas:
    """This process's place among ``world`` replicas, and the collectives a step needs."""

    def __init__(self, world: int, rank: int, device: torch.device) -> None:
        self.world, self.rank, self.device = world, rank, device

    def _collective(self, what: str, run, *args, **kwargs):
        """``run(*args, **kwargs)``, a torch.distributed collective; its failure -- a replica that
        died or hangs -- as a :class:`ReplicaLostError` that says which replica may be lost."""
        try:
            return run(*args, **kwargs)
        except (RuntimeError, dist.DistError) as exc:
            others = [r for r in range(self.world) if r != self.rank]
            lost = f"rank {others[0]}" if len(others) == 1 else f"one of ranks {others}"
            timeout = os.environ.get("POLYKERAS_DISTRIBUTED_TIMEOUT", DEFAULT_TIMEOUT_S)
            raise ReplicaLostError(
                f"replica {self.rank} of {self.world}: the {what} failed, {lost} has stopped or does not answer "
                f"(within POLYKERAS_DISTRIBUTED_TIMEOUT={timeout} s); look at its log. The backend said: {exc}") from exc

    def rows(self, batch, stacked: bool = False):
        """This replica's rows of one global batch (axis 1 of ``stacked`` batches): an array or a
        tuple of them; ``None`` entries stay ``None``."""
        if batch is None:
            return None
        if isinstance(batch, tuple):
            return tuple(self.rows(a, stacked) for a in batch)
        part = replica_rows(batch.shape[1 if stacked else 0], self.world, self.rank)
        return batch[:, part] if stacked else batch[part]

    def average(self, grads) -> list[torch.Tensor]:
        """The replicas' mean of each gradient: one flat buffer, one all-reduce."""
        grads = list(grads)
        flat = _flatten_dense_tensors(grads)
        self._collective("gradient all-reduce", dist.all_reduce, flat, op=dist.ReduceOp.SUM)
        flat.div_(self.world)
        return list(_unflatten_dense_tensors(flat, grads))

    def broadcast(self, tensors) -> None:
        """Rank 0's values of ``tensors``, in place, on every replica (the initial weights)."""
        with torch.no_grad():
            for t in tensors:
                self._collective("broadcast of the initial weights", dist.broadcast, t.data, src=0)

    def broadcast_seed(self, seed: int) -> int:
        value = torch.tensor([seed], dtype=torch.int64, device=self.device)
        self._collective("broadcast of the fit seed", dist.broadcast, value, src=0)
        return int(value.item())

    def results(self, logs) -> dict[str, float]:
        """The logs of all replicas: each one's sums of ``logs`` (a ``DeferredMeans``) all-reduced,
        then turned into means and metric values as on one device. Leaves ``logs`` as it was."""
        logs.flush()
        acc, stats = logs.accumulator, logs.statistics
        sums = [] if acc._sums is None else [torch.as_tensor(s, dtype=torch.float64) for s in acc._sums]
        parts = [] if stats.sums is None else [torch.as_tensor(s, dtype=torch.float64) for s in stats.sums]
        count = torch.tensor([float(acc._count)], dtype=torch.float64)
        flat = torch.cat([count] + [t.reshape(-1).cpu() for t in sums + parts]).to(self.device)
        self._collective("all-reduce of the logs", dist.all_reduce, flat, op=dist.ReduceOp.SUM)
        flat = flat.cpu()
        total, offset = MeanAccumulator(acc.names), 1
        if acc._sums is not None:
            total._sums = [flat[offset + i] for i in range(len(sums))]
            total._count = int(flat[0].item())
            offset += len(sums)
        summed = SummedStatistics(stats.metrics, stats.to_numpy)
        if stats.sums is not None:
            summed.sums = []
            for t in parts:
                summed.sums.append(flat[offset:offset + t.numel()].reshape(t.shape).to(t.dtype))
                offset += t.numel()
        return ordered(logs.log_names, total.results(), summed.results())
