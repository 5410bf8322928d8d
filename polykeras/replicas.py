"""``polykeras train --replicas N``: the train command, data-parallel, without a launcher to learn.

* **torch**: one process per replica. Started plainly, the command starts ``torchrun
  --standalone --nproc-per-node N`` on itself (:func:`launch`) and returns its exit status;
  each process then joins the others (:func:`join`, :func:`polykeras.distribution.initialize`).
  Under a launcher of the user's (``WORLD_SIZE`` set), it joins directly, so
  ``torchrun --nnodes 2 ... -m polykeras train ... --replicas 8`` runs on several machines too.
* **jax**: one process over ``N`` devices. On a CPU, ``N`` host devices are made with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before JAX starts.

Every batch must divide by ``N`` (:mod:`polykeras.distribution`), so :func:`cut` drops the
fewest samples that make the training, validation and test sets multiples of ``N``, and says so.
The core imports no framework here: torchrun is started as ``python -m torch.distributed.run``.
"""

from __future__ import annotations

import os
import subprocess
import sys

#: the backends whose data-parallel training this command drives
BACKENDS = ("torch", "jax")


def check(replicas: int, backend: str, batch_size: int) -> None:
    """Refuse what cannot run data-parallel, with what to do instead (``ValueError``)."""
    if replicas < 1:
        raise ValueError(f"--replicas {replicas}: give at least 1")
    if backend not in BACKENDS:
        raise ValueError(f"--replicas needs a backend that trains data-parallel ({', '.join(BACKENDS)}); "
                         f"backend {backend!r} does not (choose one with --backend)")
    if batch_size % replicas:
        raise ValueError(f"batch size {batch_size} does not divide by --replicas {replicas}: each replica trains on an "
                         "equal share of every batch; choose a --batch-size that divides")


def launched() -> bool:
    """Whether a launcher (torchrun, or this module's :func:`launch`) started this process."""
    return "WORLD_SIZE" in os.environ


def launch(replicas: int, argv: list[str]) -> int:
    """Run ``polykeras <argv>`` as ``replicas`` torch processes under torchrun; its exit status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={replicas}",
               "-m", "polykeras", *argv]
    print(f"starting {replicas} torch processes: torchrun --standalone --nproc-per-node={replicas} -m polykeras "
          + " ".join(argv), flush=True)
    return subprocess.run(command).returncode


def prepare_host_devices(replicas: int, device: str | None) -> None:
    """For jax on a CPU: ``replicas`` host devices, set before JAX starts (a no-op when the flag is set)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if device in (None, "cpu") and "xla_force_host_platform_device_count" not in flags:
        if "jax" in sys.modules:
            raise RuntimeError("JAX started before --replicas could give it host devices; set XLA_FLAGS="
                               f"--xla_force_host_platform_device_count={replicas} yourself")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={replicas}".strip()


def join(replicas: int, backend: str, device: str | None):
    """Join the run (torch: the launcher's processes) and make data parallelism the default; the
    :class:`polykeras.distribution.DataParallel` set."""
    from polykeras import distribution

    cluster = distribution.initialize(backend=backend, device=device)
    if backend == "torch" and cluster.num_processes != replicas:
        raise ValueError(f"--replicas {replicas}, but the launcher started {cluster.num_processes} processes")
    value = distribution.DataParallel() if backend == "torch" else distribution.DataParallel(num_replicas=replicas)
    distribution.set_distribution(value)
    return value


def cut(n: int, replicas: int) -> int:
    """The largest count of samples up to ``n`` that divides by ``replicas``."""
    return n - n % replicas
