"""Loss and metrics of a run, computed lazily and in bulk.

For small models the bookkeeping of a step -- a metric's ``argmax``, ``==``,
``mean``, the running sums -- is a dozen tiny torch calls, as many as the
model itself. :class:`DeferredMeans` therefore only *keeps* each step's
detached loss, targets and outputs, and evaluates the metrics every
``flush_every`` steps (or when the logs are read) on all kept steps at once:
one ``cat`` and one metric call instead of one per step. Nothing is copied to
the host until :meth:`results`.

Every Keras metric here is a per-sample mean, so the metric of the
concatenated steps equals the sample-weighted mean of per-step batch means,
which is what Keras reports (and the reference computes), up to rounding.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from polykeras.program import MeanAccumulator

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class DeferredMeans:
    """``metrics`` are ``(output index, metric)`` pairs; a step's ``y`` and
    ``output`` are tuples with one tensor per output, and its ``loss`` is a
    scalar, or for several outputs the vector ``[total, each output's loss]``
    (the names' order)."""

    def __init__(self, names: Sequence[str], metrics: Sequence[tuple[int, Metric]], flush_every: int = 32):
        self.metrics = list(metrics)
        self.flush_every = flush_every
        self.accumulator = MeanAccumulator(names)
        self.pending: list[tuple[torch.Tensor, tuple, tuple]] = []

    def add(self, loss: torch.Tensor, y: tuple, output: tuple) -> None:
        """Keep one step's (detached) loss, targets and outputs. The targets
        must not be modified afterwards (the program hands over its own copy)."""
        self.pending.append((loss, y, output))
        if len(self.pending) >= self.flush_every:
            self.flush()

    @torch.no_grad()
    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        sizes = [len(y[0]) for _, y, _ in pending]
        total = sum(sizes)
        losses = torch.stack([loss for loss, _, _ in pending])
        if len(set(sizes)) == 1:
            loss = losses.mean(dim=0)
        else:
            loss = torch.tensordot(torch.tensor(sizes, dtype=losses.dtype).to(losses.device), losses, dims=1) / total
        values = list(loss.unbind()) if loss.dim() else [loss]
        if self.metrics:
            if len(pending) == 1:
                ys, outputs = pending[0][1], pending[0][2]
            else:
                ys = [torch.cat(parts) for parts in zip(*(y for _, y, _ in pending))]
                outputs = [torch.cat(parts) for parts in zip(*(out for _, _, out in pending))]
            values += [metric(ys[i], outputs[i]) for i, metric in self.metrics]
        self.accumulator.add(values, total)

    def results(self) -> dict[str, float]:
        self.flush()
        return self.accumulator.results()

    def reset(self) -> None:
        self.pending = []
        self.accumulator.reset()
