"""Keras's per-output ``compile`` arguments for a model of several outputs:
a loss, a loss weight and metrics for each output, given once (the same for
every output), as a list in output order, or as a dict keyed by output name."""

from __future__ import annotations

from polykeras import losses as _losses
from polykeras import metrics as _metrics
from polykeras.spec import OutputTraining


def per_output(value, names: list[str], what: str, default=None) -> list:
    """One entry of ``value`` per output: a dict by name, a list in order, else the value for all."""
    if value is None:
        return [default] * len(names)
    if isinstance(value, dict):
        unknown = sorted(set(map(str, value)) - set(names))
        if unknown:
            raise ValueError(f"{what} has key(s) {unknown} that name no output; the outputs are {names}")
        return [value.get(name, default) for name in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"{what} has {len(value)} entries for {len(names)} outputs ({', '.join(names)}); give "
                             "one per output, or a dict keyed by output name")
        return list(value)
    return [value] * len(names)


def per_output_metrics(metrics, names: list[str]) -> list[list]:
    """``["accuracy"]`` applies to every output; ``[["accuracy"], ["mae"]]`` or
    ``{"out": ["mae"]}`` per output."""
    if isinstance(metrics, (list, tuple)) and not all(m is None or isinstance(m, (list, tuple)) for m in metrics):
        metrics = [list(metrics)] * len(names)
    return [[] if m is None else ([m] if isinstance(m, str) else list(m))
            for m in per_output(metrics, names, "metrics", default=[])]


class OutputsConfig:
    """What ``compile`` records for each output of a model of several."""

    def __init__(self, names: list[str], loss, loss_weights, metrics, weighted_metrics=None):
        self.names = names
        self.losses = []
        for name, entry in zip(names, per_output(loss, names, "loss")):
            if entry is None:
                raise ValueError(f"compile() gives output {name!r} no loss; give every output one (a list in "
                                 f"output order, or a dict keyed by {names})")
            self.losses.append(_losses.get(entry))
        self.weights = [float(w) for w in per_output(loss_weights, names, "loss_weights", default=1.0)]
        self.metric_ids = per_output_metrics(metrics, names)
        self.weighted_metric_ids = per_output_metrics(weighted_metrics, names)
        for i, loss in enumerate(self.losses):  # fail now on a typo, with the list of valid names
            self.metric_ids[i] = _metrics.check(self.metric_ids[i], loss.kind)
            self.weighted_metric_ids[i] = _metrics.check(self.weighted_metric_ids[i], loss.kind, "weighted_metrics")

    def training(self, output_nodes: list[str], output_shapes: list[tuple], y_ndims) -> tuple[OutputTraining, ...]:
        """One :class:`OutputTraining` per output, for targets of ranks ``y_ndims``."""
        plain, weighted = [], []  # (output index, (prefix, metric)), Keras's naming over all outputs at once
        for i, (name, shape, loss, ndim) in enumerate(zip(self.names, output_shapes, self.losses, y_ndims)):
            plain += [(i, (f"{name}_", _metrics.resolve(m, loss.kind, ndim, shape))) for m in self.metric_ids[i]]
            weighted += [(i, (f"{name}_", _metrics.resolve(m, loss.kind, ndim, shape, weighted=True)))
                         for m in self.weighted_metric_ids[i]]
        named = _metrics.unique_names([e for _, e in plain], [e for _, e in weighted])
        owners = [i for i, _ in plain] + [i for i, _ in weighted]
        specs = named[0] + named[1]
        return tuple(OutputTraining(node, loss.to_spec(shape, ndim), weight, f"{name}_loss",
                                    tuple(m for owner, m in zip(owners, specs) if owner == i))
                     for i, (name, node, loss, weight, shape, ndim) in enumerate(zip(
                         self.names, output_nodes, self.losses, self.weights, output_shapes, y_ndims)))

    def config(self) -> dict:
        return {"loss": {n: _losses.serialize(l) for n, l in zip(self.names, self.losses)},
                "loss_weights": dict(zip(self.names, self.weights)),
                "metrics": {n: [_metrics.serialize(m) for m in ids] for n, ids in zip(self.names, self.metric_ids)},
                "weighted_metrics": {n: [_metrics.serialize(m) for m in ids]
                                     for n, ids in zip(self.names, self.weighted_metric_ids)}}
