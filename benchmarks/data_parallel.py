"""Data-parallel training: ms per step and the all-reduce's share of it, 1 vs 2 replicas.

    .venv/bin/python benchmarks/data_parallel.py                  # torch and jax, 2 rounds
    .venv/bin/python benchmarks/data_parallel.py --backend torch --rounds 3 --steps 60

Workload: the MNIST MLP 784-512-512-10 with Dropout(0.2), global batch 128, Adam, float32,
seeded synthetic data (uniform inputs, labels from a fixed projection). Sides:

* torch, 1 process (no distribution) and 2 processes under ``torchrun`` (gloo): ms per step of
  ``fit`` (an epoch timed from ``on_epoch_begin`` to ``on_epoch_end``; the first epoch is a
  warm-up), and on rank 0 the wall time spent inside ``torch.distributed.all_reduce`` per step
  (the gradient and the logs) -- the communication share;
* jax, 1 device and 2 host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``, each
  side in its own process): ms per step; XLA's all-reduce is inside the compiled step, so no
  share is given.

Threads: torchrun gives each worker ``OMP_NUM_THREADS=1``, so every side runs with
``OMP_NUM_THREADS=1`` unless it is set (with torch's default of one thread per core, the single
process fought the other jobs of the shared machine: 166 ms/step against 25). Each side runs in
a fresh process, the sides alternate round by round; compare ratios within a
run. On a 2-core machine two replicas share the two cores that one process already uses, so no
speed-up is possible there: what this measures is the overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BATCH = 128


def worker(backend: str, replicas: int, steps: int, epochs: int, out: str) -> None:
    """One side, in this process: train and write ``{"ms_per_step": [...], "comm_ms_per_step": ...}``."""
    import numpy as np

    import polykeras
    from polykeras import distribution as dist
    from polykeras.workloads import get

    comm = [0.0]
    if backend == "torch" and replicas > 1:
        import torch.distributed as tdist

        all_reduce = tdist.all_reduce

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return all_reduce(*args, **kwargs)
            finally:
                comm[0] += time.perf_counter() - start

        tdist.all_reduce = timed
    cluster = dist.initialize(backend=backend)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(steps * BATCH, 784)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(784, 10)), axis=1)
    polykeras.utils.set_random_seed(0)
    workload = get("mnist-mlp")
    model = workload.build()
    workload.compile(model, backend=backend, dtype="float32",
                     distribution=dist.DataParallel(num_replicas=replicas) if replicas > 1 else None)
    times: list[float] = []

    class Clock(polykeras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.comm = time.perf_counter(), comm[0]

        def on_epoch_end(self, epoch, logs=None):
            times.append((time.perf_counter() - self.start, comm[0] - self.comm))

    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[Clock()], shuffle=True)
    if cluster.process_id == 0:
        timed_epochs = times[1:]  # the first is a warm-up
        with open(out, "w") as f:
            json.dump({"ms_per_step": [1e3 * t / steps for t, _ in timed_epochs],
                       "comm_ms_per_step": [1e3 * c / steps for _, c in timed_epochs]}, f)


def run_side(backend: str, replicas: int, steps: int, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "side.json")
        args = [__file__, "--worker", backend, str(replicas), str(steps), str(epochs), out]
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        if backend == "torch" and replicas > 1:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                       str(replicas), *args]
        else:
            command = [sys.executable, *args]
            if backend == "jax":
                env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={replicas}"
        subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        with open(out) as f:
            return json.load(f)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        backend, replicas, steps, epochs, out = sys.argv[2:7]
        worker(backend, int(replicas), int(steps), int(epochs), out)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["torch", "jax", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per side, the first a warm-up")
    args = parser.parse_args()
    backends = ["torch", "jax"] if args.backend == "both" else [args.backend]
    print(f"mnist-mlp, global batch {BATCH}, float32, {args.steps} steps x {args.epochs - 1} timed epochs; "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')} per process, "
          f"load average {os.getloadavg()[0]:.1f}")
    results: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.rounds):
        for backend in backends:
            for replicas in (1, 2):
                results.setdefault((backend, replicas), []).append(
                    run_side(backend, replicas, args.steps, args.epochs))
    print(f"{'side':<22} {'ms/step (median)':>17} {'min':>7} {'max':>7} {'samples/s':>10} {'all-reduce ms/step':>19}"
          f" {'share':>6}")
    for (backend, replicas), runs in results.items():
        ms = [m for r in runs for m in r["ms_per_step"]]
        comm = [c for r in runs for c in r["comm_ms_per_step"]]
        median = statistics.median(ms)
        share = f"{statistics.median(comm) / median:6.0%}" if replicas > 1 and backend == "torch" else f"{'-':>6}"
        comm_text = f"{statistics.median(comm):19.2f}" if replicas > 1 and backend == "torch" else f"{'-':>19}"
        print(f"{backend + f', {replicas} replica(s)':<22} {median:17.2f} {min(ms):7.2f} {max(ms):7.2f} "
              f"{BATCH / median * 1e3:10.0f} {comm_text} {share}")


if __name__ == "__main__":
    main()
