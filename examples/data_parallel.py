"""Data-parallel training of the mnist-mlp workload (784-512-512-10, Adam) on torch or jax.

torch, one process per replica (2 here; on a GPU machine, one per GPU):

    torchrun --nproc-per-node 2 examples/data_parallel.py torch

jax, one process over every device it sees (on a CPU, fake 2 devices with XLA_FLAGS):

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python examples/data_parallel.py jax

``batch_size`` is the global batch: each of N replicas trains on batch_size / N of its rows.
Every batch must divide by N, so the data is cut to a multiple of the batch size here.
"""

import sys

import polykeras
from polykeras import distribution
from polykeras.workloads import get

backend = sys.argv[1] if len(sys.argv) > 1 else "torch"
cluster = distribution.initialize(backend=backend)  # torchrun's RANK/WORLD_SIZE...; alone: nothing to join
distribution.set_distribution(distribution.DataParallel())  # every device (jax) or process (torch)
polykeras.utils.set_random_seed(0)

workload = get("mnist-mlp")
(x, y), (x_test, y_test) = workload.load()
batch_size = 128
keep = len(x) - len(x) % batch_size
model = workload.build()
workload.compile(model, backend=backend)
model.fit(x[:keep], y[:keep], batch_size=batch_size, epochs=1)
logs = model.evaluate(x_test[:2048], y_test[:2048], batch_size=batch_size, verbose=0, return_dict=True)
if distribution.is_chief():
    print(f"{backend}, {model._program.num_replicas} replicas: test {logs}")
model.save("mnist_mlp_data_parallel.keras")  # rank 0 writes it; the other ranks write nothing
