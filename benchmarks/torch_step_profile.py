"""Where a torch-backend training step goes: aten calls and CPU time by phase, against a plain PyTorch loop.

    python benchmarks/torch_step_profile.py                      # mlp, 40 steps, torch's default threads
    python benchmarks/torch_step_profile.py --workloads mlp,cnn --threads 1 --ops 15

The workloads, data and plain loop are ``torch_backend.py``'s. Per workload, the polykeras side
(``model.fit(..., verbose=0)``, the user's path) runs two warm-up epochs, then one epoch under
``torch.profiler`` with each phase of the step marked by ``record_function``: ``inputs`` (the
batch to tensors), ``forward``, ``loss``, ``backward`` (``torch.autograd.grad``), ``optimizer``
(clip, decay, update), ``logs`` (keeping the step's loss/outputs, and every ``flush_every`` steps
the metrics over the kept steps) and ``host`` (everything else: the trainer's batching, the
step's Python glue). Reported per step: the aten calls a phase issues (nested calls included,
as ``torch.profiler`` counts them, and the top-level ones Python dispatches), the self CPU time
of those ops and the phase's wall time under the profiler. The plain loop (``nn.Module`` +
``torch.optim`` as ``torch_backend.py`` runs it) gets the same counts for its whole epoch.
``--ops`` lists the most expensive ops by self CPU time.

The profiler's own cost inflates the times (every op is recorded); compare phases within one
run, and take speed from ``torch_backend.py``. Counts do not depend on load.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_backend import WORKLOADS, FitSide, PlainTorchSide  # noqa: E402

PHASES = ("inputs", "forward", "loss", "backward", "optimizer", "logs")


def _marked(fn, label):
    from torch.profiler import record_function

    def run(*args, **kwargs):
        with record_function(label):
            return fn(*args, **kwargs)
    return run


def _mark_phases(program, torch):
    """Wrap the program's step functions in ``record_function`` labels (``#phase``); returns the undo."""
    for attr, label in (("_inputs", "inputs"), ("_targets", "inputs"), ("_forward", "forward")):
        setattr(program, attr, _marked(getattr(program, attr), "#" + label))
    program.objectives = [(_marked(fn, "#loss"), weight) for fn, weight in program.objectives]
    program.optimizer.apply = _marked(program.optimizer.apply, "#optimizer")
    program.logs.add = _marked(program.logs.add, "#logs")
    program.logs.flush = _marked(program.logs.flush, "#logs")
    grad = torch.autograd.grad
    torch.autograd.grad = _marked(grad, "#backward")
    return lambda: setattr(torch.autograd, "grad", grad)


def _phase(event) -> str:
    parent = event.cpu_parent
    while parent is not None and not parent.name.startswith("#"):
        parent = parent.cpu_parent
    return parent.name[1:] if parent is not None and parent.name != "#epoch" else "host"


def _tally(events, steps):
    """Per phase: nested aten calls, top-level aten calls, self CPU us; and the per-op totals."""
    calls, top, self_us = collections.Counter(), collections.Counter(), collections.Counter()
    ops = collections.defaultdict(lambda: [0, 0.0])
    for e in events:
        if e.name.startswith("#"):
            continue
        phase = _phase(e)
        self_us[phase] += e.self_cpu_time_total
        if e.name.startswith("aten::"):
            calls[phase] += 1
            parent = e.cpu_parent
            if parent is None or parent.name.startswith("#"):
                top[phase] += 1
        ops[e.name][0] += 1
        ops[e.name][1] += e.self_cpu_time_total
    return ({k: v / steps for k, v in calls.items()}, {k: v / steps for k, v in top.items()},
            {k: v / steps for k, v in self_us.items()}, {k: (n / steps, us / steps) for k, (n, us) in ops.items()})


def profile_epoch(run, steps):
    """``run()`` (one epoch) under torch.profiler; the events and the epoch's wall time."""
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("#epoch"):
            start = time.perf_counter()
            run()
            seconds = time.perf_counter() - start
    return prof.events(), seconds


def workload(name, args, torch):
    import polykeras

    polykeras.utils.set_random_seed(0)
    side = FitSide(polykeras, name, backend="torch", dtype="float32")
    plain = PlainTorchSide(name, side.model)
    steps = WORKLOADS[name][1]
    for _ in range(2):
        side.epoch()
        plain.epoch()
    program = side.model._program
    undo = _mark_phases(program, torch)
    try:
        events, seconds = profile_epoch(side.epoch, steps)
    finally:
        undo()
    wall = collections.Counter()
    for e in events:
        if e.name.startswith("#") and e.name != "#epoch" and _phase(e) != e.name[1:]:  # outermost only
            wall[e.name[1:]] += e.cpu_time_total / steps
    calls, top, self_us, ops = _tally(events, steps)
    plain_events, plain_seconds = profile_epoch(plain.epoch, steps)
    plain_calls, plain_top, plain_self, plain_ops = _tally(plain_events, steps)

    print(f"\n{name}: {steps} steps; polykeras {1000 * seconds / steps:.2f} ms/step under the profiler, "
          f"plain torch {1000 * plain_seconds / steps:.2f}\n")
    print("| phase | aten calls/step (top-level) | self CPU ms/step | wall ms/step |")
    print("|---|---|---|---|")
    for phase in PHASES + ("host",):
        wall_cell = f"{wall[phase] / 1000:.3f}" if phase in wall else "-"
        print(f"| {phase} | {calls.get(phase, 0):.1f} ({top.get(phase, 0):.1f}) | "
              f"{self_us.get(phase, 0) / 1000:.3f} | {wall_cell} |")
    print(f"| **polykeras step** | {sum(calls.values()):.1f} ({sum(top.values()):.1f}) | "
          f"{sum(self_us.values()) / 1000:.3f} | {1000 * seconds / steps:.3f} |")
    print(f"| plain torch step | {sum(plain_calls.values()):.1f} ({sum(plain_top.values()):.1f}) | "
          f"{sum(plain_self.values()) / 1000:.3f} | {1000 * plain_seconds / steps:.3f} |")
    if args.ops:
        for label, table in (("polykeras", ops), ("plain torch", plain_ops)):
            print(f"\n{label}, top {args.ops} ops by self CPU: " + ", ".join(
                f"{k.replace('aten::', '')} {n:g}x {us / 1000:.3f} ms"
                for k, (n, us) in sorted(table.items(), key=lambda kv: -kv[1][1])[:args.ops]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="mlp")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--ops", type=int, default=12, help="list the N most expensive ops (0: none)")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    for name in args.workloads.split(","):
        workload(name, args, torch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
