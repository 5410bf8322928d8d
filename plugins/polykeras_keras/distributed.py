"""Data parallelism for keras-jax: Keras's own ``keras.distribution.DataParallel``, in the worker.

Keras 3 trains data-parallel on JAX only. :class:`KerasJaxBackend` is keras-jax with the three
methods of a distributing backend (``list_devices``, ``distribute``, ``replica_launch``); the
program it distributes is rebuilt in its worker under ``keras.distribution.DataParallel`` over the
first ``N`` devices of the worker's JAX -- Keras replicates the variables and splits each batch
along its first axis, device ``i`` holding rows ``[i*B/N, (i+1)*B/N)`` as
:func:`polykeras.distribution.replica_rows` says -- and its steps are Keras's own jitted steps, as
``Model.fit`` runs them under a distribution. On a CPU, when ``N`` is more than the worker's
devices, the program moves to a worker of its own whose JAX has ``N`` host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N`` in that worker's environment): the user's
process needs no flag. The core decides the data as for every backend (global batches, order,
step seeds, the parity masks fed as inputs and split with the batch).

A program running in this process (Keras already imported here on jax) is refused: Keras's
distribution would then be this process's, and its devices fixed when JAX started.
"""

from __future__ import annotations

from polykeras.distribution import DataParallel

from .backend import KerasBackend


class KerasJaxBackend(KerasBackend):
    def _worker(self, host_devices: int = 0):
        from .worker import Worker

        return Worker.get(self.keras_backend, self.dtype, self.device, host_devices)

    def list_devices(self, device_type: str | None = None) -> list[str]:
        """The devices of the worker's JAX (``"cpu:0"``, ...), as ``keras.distribution.list_devices``."""
        return [d for d in self._worker().call("devices", None)
                if device_type is None or d.split(":")[0] == device_type]

    def replica_launch(self, replicas: int) -> dict | None:
        """One process: on a CPU the worker gets its host devices itself; elsewhere, enough devices or ``None``."""
        if self.device == "cpu" or len(self.list_devices()) >= replicas:
            return {"processes": 1, "env": {}}
        return None

    def distribute(self, program, value: DataParallel):
        from .program import WorkerProgram

        if not isinstance(program, WorkerProgram):
            raise NotImplementedError("keras-jax trains data-parallel in its worker process, but Keras on jax is "
                                      "imported in this process, so the program runs here; set "
                                      "POLYKERAS_KERAS_WORKER=1")
        worker = program.worker
        available = worker.call("devices", None)
        wanted = value.num_replicas
        if self.device == "cpu" and wanted is not None and wanted > len(available):
            worker = self._worker(host_devices=wanted)
            available = worker.call("devices", None)
        devices = list(value.devices_for(available))
        if devices != available[:len(devices)]:
            raise ValueError(f"keras-jax replicates over the first devices of its worker, in order ({available}); "
                             f"{value!r} names others: pass num_replicas instead")
        if len(devices) > 1:
            program.distribute(len(devices), worker)
        return program
