"""Deliberately broken data-parallel backends: conformance L4 must catch each.

Loaded into L4's worker processes through ``POLYKERAS_PLUGINS`` (see
``tests/test_conformance_l4.py``). Each is a first-party backend whose
distribution has one classic mistake planted; on one device they are correct,
so only the N-replica run differs from the 1-device run. The frameworks are
imported only when a backend is created (the factories are named lazily).
"""

from __future__ import annotations

from polykeras.backends import BackendInfo
from polykeras.hookspecs import hookimpl


def skips_all_reduce(device, dtype):
    """torch: each replica applies its own half's gradient (the all-reduce forgotten)."""
    from polykeras_torch.backend import TorchBackend

    class SkipsAllReduce(TorchBackend):
        name = "bug-dp-no-all-reduce"

        def distribute(self, program, value):
            program = super().distribute(program, value)
            if program.replicas is not None:
                program.replicas.average = lambda grads: list(grads)
            return program

    return SkipsAllReduce(device, dtype)


def sums_gradients(device, dtype):
    """torch: the replicas' gradients all-reduced but summed, not averaged (N times too large:
    under Adam and RMSprop, nearly scale-free, only their epsilon notices)."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    from polykeras_torch.backend import TorchBackend

    def summed(grads):
        grads = list(grads)
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        return list(_unflatten_dense_tensors(flat, grads))

    class SumsGradients(TorchBackend):
        name = "bug-dp-sum-not-mean"

        def distribute(self, program, value):
            program = super().distribute(program, value)
            if program.replicas is not None:
                program.replicas.average = summed
            return program

    return SumsGradients(device, dtype)


def first_rows_everywhere(device, dtype):
    """jax: every device of the mesh trains on the first replica's rows (a wrong batch split)."""
    import jax
    import numpy as np

    from polykeras_jax.backend import JaxBackend
    from polykeras_jax.distributed import BatchSharding

    class FirstRows(BatchSharding):
        def __call__(self, batch, stacked=False):
            if batch is None or isinstance(batch, tuple):
                return super().__call__(batch, stacked)
            a = np.asarray(batch)
            axis = 1 if stacked else 0
            per = a.shape[axis] // self.replicas

            def rows(index):
                index = list(index)
                index[axis] = slice(0, per)
                return a[tuple(index)]

            return jax.make_array_from_callback(a.shape, self.stacked if stacked else self.flat, rows)

    class FirstRowsEverywhere(JaxBackend):
        name = "bug-dp-first-rows"

        def distribute(self, program, value):
            program = super().distribute(program, value)
            if program._batches is not None:
                program._batches.__class__ = FirstRows
            return program

    return FirstRowsEverywhere(device, dtype)


def _joins_processes(factory, module: str):
    """Let ``factory`` join several processes as the framework's own backend does
    (:func:`polykeras.distribution.initialize` looks for this on the factory)."""

    def initialize_distributed(cluster, device=None):
        from polykeras.backends import _resolve, find_backend

        _resolve(find_backend(module).factory).initialize_distributed(cluster, device)

    factory.initialize_distributed = initialize_distributed
    return factory


for _factory, _module in ((skips_all_reduce, "torch"), (sums_gradients, "torch"), (first_rows_everywhere, "jax")):
    _joins_processes(_factory, _module)

PLANTED = {  # backend name: (factory, framework module)
    "bug-dp-no-all-reduce": (skips_all_reduce, "torch"),
    "bug-dp-sum-not-mean": (sums_gradients, "torch"),
    "bug-dp-first-rows": (first_rows_everywhere, "jax"),
}


@hookimpl
def polykeras_backends():
    return [BackendInfo(name=name, factory=factory, requires=(module,), plugin=__name__)
            for name, (factory, module) in PLANTED.items()]
