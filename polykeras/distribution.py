"""Data-parallel training, shaped like ``keras.distribution``.

::

    import polykeras
    from polykeras import distribution

    distribution.initialize()                    # under torchrun / several JAX hosts; harmless alone
    distribution.set_distribution(distribution.DataParallel())   # every device (or process)
    model.compile(optimizer="sgd", loss="...", backend="jax")     # or compile(distribution=...)
    model.fit(x, y, batch_size=64)                                # 64 = the *global* batch

The core decides the data, exactly as on one device: the global batch is the user's
``batch_size``, its order and the step seeds do not change. Replica ``i`` of ``N`` takes the
fixed contiguous rows ``[i*B/N, (i+1)*B/N)`` of every global batch of ``B`` rows
(:meth:`DataParallel.replica_rows`); ``B`` must divide by ``N`` -- every batch, the last
partial one of an epoch included -- else a :class:`ValueError` says so (Keras's JAX
``DataParallel`` refuses such batches too). The loss stays Keras's: the sum over the *global*
batch divided by the global batch size, so the gradient applied is the one a single device
computes; only the order of the all-reduce's additions differs.

This module is framework-free: a backend implements distribution through three optional
methods of its :class:`~polykeras.program.Backend` (``list_devices``,
``initialize_distributed`` and ``distribute``); a backend without them is refused with an
error that names it. See ``docs/distribution.md`` for what is and is not done.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Cluster", "DataParallel", "list_devices", "set_distribution", "distribution", "initialize",
           "cluster", "is_chief", "distribute"]


@dataclass(frozen=True)
class Cluster:
    """The processes of a run as :func:`initialize` found them: this process's index among
    ``num_processes`` (torchrun's ``RANK``/``WORLD_SIZE``, JAX's ``JAX_PROCESS_ID``/
    ``JAX_NUM_PROCESSES``), its index on its machine (``LOCAL_RANK``) and the coordinator's
    ``host:port`` (``MASTER_ADDR``:``MASTER_PORT``, or ``JAX_COORDINATOR_ADDRESS``)."""

    process_id: int = 0
    num_processes: int = 1
    local_rank: int = 0
    coordinator: str | None = None
    launcher: str = "none"  # "torchrun", "jax" or "none"


_cluster: Cluster | None = None
_distribution: "DataParallel | None" = None


def _env_int(env, name: str, default: int) -> int:
    value = env.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def cluster_from_env(environ=None) -> Cluster:
    """The :class:`Cluster` the environment describes: torchrun's variables first, then JAX's;
    one process alone when neither is set."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env or "RANK" in env:
        address, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
        return Cluster(_env_int(env, "RANK", 0), _env_int(env, "WORLD_SIZE", 1), _env_int(env, "LOCAL_RANK", 0),
                       f"{address}:{port}" if address and port else address, "torchrun")
    if "JAX_COORDINATOR_ADDRESS" in env:
        return Cluster(_env_int(env, "JAX_PROCESS_ID", 0), _env_int(env, "JAX_NUM_PROCESSES", 1),
                       _env_int(env, "JAX_LOCAL_RANK", 0), env["JAX_COORDINATOR_ADDRESS"], "jax")
    return Cluster()


def _check(c: Cluster) -> Cluster:
    if c.num_processes < 1 or not 0 <= c.process_id < c.num_processes:
        raise ValueError(f"process {c.process_id} of {c.num_processes} does not exist: the rank must be in "
                         f"[0, world size) and the world size >= 1 (check RANK/WORLD_SIZE or JAX_PROCESS_ID/"
                         "JAX_NUM_PROCESSES)")
    return c


def initialize(*, backend: str | None = None, device: str | None = None, cluster: Cluster | None = None) -> Cluster:
    """Join the run's other processes, reading the launcher's environment (:func:`cluster_from_env`)
    unless ``cluster`` is given; with one process it only records that. With several, the backend
    (``backend``, default: the selected one; ``device``, default: ``POLYKERAS_DEVICE`` or its best)
    connects them: torch's ``init_process_group``, ``jax.distributed.initialize``. Call it once,
    first: before anything creates the backend (JAX must not have started). Returns the cluster."""
    global _cluster
    found = _check(cluster or cluster_from_env())
    if found.num_processes > 1:
        from polykeras.backends import _resolve, find_backend, selected_backend_name

        info = find_backend(backend or selected_backend_name())
        if info.missing():
            info.create(device)  # raises, saying what to install
        # a class-level method: creating the backend would start JAX before jax.distributed.initialize
        method = getattr(_resolve(info.factory), "initialize_distributed", None)
        if method is None:
            raise NotImplementedError(f"backend {info.name!r} cannot run several processes (its Backend class has "
                                      "no initialize_distributed method); use the torch or jax backend")
        method(found, device or os.environ.get("POLYKERAS_DEVICE"))
    _cluster = found
    return found


def cluster() -> Cluster:
    """The cluster :func:`initialize` joined; before it, the one the environment describes."""
    return _cluster if _cluster is not None else _check(cluster_from_env())


def is_chief() -> bool:
    """Whether this process is rank 0: the one that writes files and shows the progress bar."""
    return cluster().process_id == 0


def _backend(name: str | None = None):
    from polykeras.backends import get_backend

    return get_backend(name)


def list_devices(device_type: str | None = None, *, backend: str | None = None) -> list[str]:
    """The devices the backend (``backend``, default: the selected one) can replicate a model
    over, e.g. ``["cpu:0", "cpu:1"]``; ``device_type`` (``"cpu"``, ``"gpu"``, ...) keeps one
    kind. For a backend of one process per replica (torch) these are the processes' devices."""
    target = _backend(backend)
    method = getattr(target, "list_devices", None)
    if method is None:
        return [target.device] if device_type in (None, target.device.split(":")[0]) else []
    return list(method(device_type))


class DataParallel:
    """Replicate the model on ``devices`` (default: every device the backend lists, at compile
    time) or on the first ``num_replicas`` of them, and split each global batch between them."""

    batch_dim_name = "data"

    def __init__(self, devices: Sequence[str] | None = None, num_replicas: int | None = None) -> None:
        if devices is not None:
            devices = [str(d) for d in devices]
            if not devices:
                raise ValueError("DataParallel(devices=[]) has no device; pass devices=None for all of them")
            if len(set(devices)) != len(devices):
                raise ValueError(f"DataParallel got a device twice: {devices}")
        if num_replicas is not None:
            num_replicas = int(num_replicas)
            if num_replicas < 1:
                raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
            if devices is not None and num_replicas != len(devices):
                raise ValueError(f"num_replicas={num_replicas} but {len(devices)} devices given; pass one of them")
        self._devices = None if devices is None else tuple(devices)
        self._num_replicas = num_replicas

    def devices_for(self, available: Sequence[str]) -> tuple[str, ...]:
        """The devices this distribution uses out of the backend's ``available`` ones."""
        if self._devices is not None:
            missing = [d for d in self._devices if d not in available]
            if missing:
                raise ValueError(f"DataParallel devices {missing} are not available; the backend has "
                                 f"{list(available)}")
            return self._devices
        n = len(available) if self._num_replicas is None else self._num_replicas
        if n > len(available):
            raise ValueError(f"DataParallel(num_replicas={n}) but the backend has only {len(available)} device(s): "
                             f"{list(available)} (for jax on CPU set XLA_FLAGS=--xla_force_host_platform_device_count"
                             f"={n} before jax is imported; for torch start {n} processes with torchrun)")
        return tuple(available[:n])

    @property
    def devices(self) -> tuple[str, ...] | None:
        return self._devices

    @property
    def num_replicas(self) -> int | None:
        """The replica count, when known before compiling (devices or ``num_replicas`` given)."""
        return len(self._devices) if self._devices is not None else self._num_replicas

    def __repr__(self) -> str:
        if self._devices is not None:
            return f"DataParallel(devices={list(self._devices)})"
        return f"DataParallel(num_replicas={self._num_replicas})"


def check_batch(rows: int, replicas: int) -> None:
    """Refuse a global batch of ``rows`` that ``replicas`` cannot split evenly."""
    if rows % replicas:
        raise ValueError(f"a batch of {rows} samples cannot be split evenly over {replicas} replicas: under "
                         f"DataParallel every batch (the last, partial one of an epoch included) must divide by the "
                         f"replica count. Choose batch_size and a number of samples divisible by {replicas}, or "
                         "drop the remainder of the data")


def check_batches(program, samples: int, batch_size: int) -> None:
    """Before a run: refuse arrays of ``samples`` rows that a distributed ``program`` could not
    split into ``batch_size`` batches evenly (the last batch included)."""
    replicas = getattr(program, "num_replicas", 1)
    if replicas > 1:
        check_batch(min(batch_size, samples), replicas)
        if samples % batch_size:
            check_batch(samples % batch_size, replicas)


def replica_rows(rows: int, replicas: int, replica: int) -> slice:
    """The fixed, contiguous rows of a global batch of ``rows`` that replica ``replica`` trains on."""
    check_batch(rows, replicas)
    if not 0 <= replica < replicas:
        raise ValueError(f"replica {replica} of {replicas} does not exist")
    per = rows // replicas
    return slice(replica * per, (replica + 1) * per)


def set_distribution(value: DataParallel | None) -> None:
    """The distribution that models compiled from now on use (``None``: one device), like
    ``keras.distribution.set_distribution``; ``compile(distribution=...)`` overrides it."""
    global _distribution
    if value is not None and not isinstance(value, DataParallel):
        raise TypeError(f"set_distribution() takes a DataParallel or None, got {type(value).__name__}")
    _distribution = value


def distribution() -> DataParallel | None:
    """The distribution set by :func:`set_distribution` (``None``: one device)."""
    return _distribution


def distribute(backend, program, value: DataParallel):
    """``program`` (just compiled by ``backend``) run data-parallel as ``value`` says: what the
    backend's ``distribute`` returns; a backend without one is refused by name."""
    method = getattr(backend, "distribute", None)
    if method is None:
        raise NotImplementedError(f"backend {backend.name!r} does not support data-parallel training (its Backend has "
                                  "no distribute method); use the torch or jax backend, or compile without a "
                                  "distribution")
    return method(program, value)


def agreed_seed(program, seed: int) -> int:
    """``seed`` as every process of a distributed ``program`` agrees on it (rank 0's): a fit's
    shuffling order and step seeds must be the same in every replica."""
    broadcast = getattr(program, "broadcast_seed", None)
    return seed if broadcast is None else int(broadcast(int(seed)))
