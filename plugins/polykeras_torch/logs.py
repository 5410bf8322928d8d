"""Loss and metrics of a run, computed lazily and in bulk.

For small models the bookkeeping of a step -- a metric's ``argmax``, ``==``,
``mean``, the running sums -- is a dozen tiny torch calls, as many as the
model itself. :class:`DeferredMeans` therefore only *keeps* each step's
detached loss, targets and outputs, and evaluates the metrics every
``flush_every`` steps (or when the logs are read) on all kept steps at once:
one ``cat`` and one metric call instead of one per step. Nothing is copied to
the host until :meth:`results`.

Every plain Keras metric here is a per-sample mean, so the metric of the
concatenated steps equals the sample-weighted mean of per-step batch means,
which is what Keras reports (and the reference computes), up to rounding. The
summed metrics (weighted ones, precision, AUC, ...) are sums of per-sample
statistics, so they too may be computed on the concatenated steps (with their
sample weights); :class:`~polykeras.metrics.statistics.SummedStatistics` adds them up.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from polykeras.metrics.statistics import SummedStatistics, ordered
from polykeras.program import MeanAccumulator, output_weights

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class DeferredMeans:
    """``metrics`` are ``(output index, metric)`` pairs of the plain mean metrics, logged
    under ``names`` after the loss(es); ``summed`` likewise for the statistics functions of
    ``statistics``'s metrics; ``log_names`` orders the logs. A step's ``y`` and ``output``
    are tuples with one tensor per output, and its ``loss`` is a scalar, or for several
    outputs the vector ``[total, each output's loss]`` (the names' order)."""

    def __init__(self, names: Sequence[str], metrics: Sequence[tuple[int, Metric]], flush_every: int = 32,
                 summed: Sequence[tuple[int, Callable]] = (), statistics: SummedStatistics | None = None,
                 log_names: Sequence[str] | None = None):
        self.metrics = list(metrics)
        self.summed = list(summed)
        self.statistics = statistics or SummedStatistics([])
        self.log_names = list(log_names or names)
        self.flush_every = flush_every
        self.accumulator = MeanAccumulator(names)
        self.pending: list[tuple[torch.Tensor, tuple, tuple, torch.Tensor | None]] = []

    def add(self, loss: torch.Tensor, y: tuple, output: tuple, sample_weight=None, metric_weight=None) -> None:
        """Keep one step's (detached) loss, targets, outputs and the weights of each summed metric: its
        ``metric_weight`` entry when the step has them, else its output's sample weights (one tensor,
        or a tuple of one per output, ``None`` for an unweighted one). The targets must not be
        modified afterwards (the program hands over its own copy)."""
        weights = None
        if self.summed:
            weights = (tuple(metric_weight) if metric_weight is not None
                       else tuple(output_weights(sample_weight, len(y))[i] for i, _ in self.summed))
        self.pending.append((loss, y, output, weights))
        if len(self.pending) >= self.flush_every:
            self.flush()

    @torch.no_grad()
    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        sizes = [len(y[0]) for _, y, _, _ in pending]
        total = sum(sizes)
        losses = torch.stack([loss for loss, _, _, _ in pending])
        if len(set(sizes)) == 1:
            loss = losses.mean(dim=0)
        else:
            loss = torch.tensordot(torch.tensor(sizes, dtype=losses.dtype).to(losses.device), losses, dims=1) / total
        values = list(loss.unbind()) if loss.dim() else [loss]
        if self.metrics or self.summed:
            if len(pending) == 1:
                ys, outputs = pending[0][1], pending[0][2]
            else:
                ys = [torch.cat(parts) for parts in zip(*(y for _, y, _, _ in pending))]
                outputs = [torch.cat(parts) for parts in zip(*(out for _, _, out, _ in pending))]
            values += [metric(ys[i], outputs[i]) for i, metric in self.metrics]
            if self.summed:
                ws = [_weights([w[j] for _, _, _, w in pending], sizes, outputs[i])
                      for j, (i, _) in enumerate(self.summed)]
                self.statistics.add([fn(ys[i], outputs[i], w) for (i, fn), w in zip(self.summed, ws)])
        self.accumulator.add(values, total)

    def results(self) -> dict[str, float]:
        self.flush()
        return ordered(self.log_names, self.accumulator.results(), self.statistics.results())

    def reset(self) -> None:
        self.pending = []
        self.accumulator.reset()
        self.statistics.reset()


def _weights(weights: list, sizes: list[int], like: torch.Tensor) -> torch.Tensor | None:
    """The kept steps' sample weights as one tensor (ones for a step without), ``None`` if none has any."""
    if all(w is None for w in weights):
        return None
    if len(weights) == 1:
        return weights[0]
    return torch.cat([torch.ones(n, dtype=like.dtype, device=like.device) if w is None else w
                      for w, n in zip(weights, sizes)])
