"""``model.summary()`` in Keras's table format."""

from __future__ import annotations

from polykeras.layers.base import format_shape


def summary_lines(model, line_length: int = 80) -> list[str]:
    """Keras's table; a functional model gets Keras's "Connected to" column
    (``layer[call][0]`` for each input of each call of the layer)."""
    from polykeras.models.sequential import Sequential

    functional = not isinstance(model, Sequential)
    if functional:
        line_length = max(line_length, 98)
        widths = (int(line_length * 0.3), int(line_length * 0.22), int(line_length * 0.12))
    else:
        widths = (int(line_length * 0.45), int(line_length * 0.33))
    rule, thick = "─" * line_length, "━" * line_length

    def row(a: str, b: str, c: str, d: str = "") -> str:
        if functional:
            return f"{a:<{widths[0]}}{b:<{widths[1]}}{c:>{widths[2]}}  {d}".rstrip()
        return f"{a:<{widths[0]}}{b:<{widths[1]}}{c:>{line_length - sum(widths)}}"

    header = row("Layer (type)", "Output Shape", "Param #", "Connected to")
    lines = [f'Model: "{model.name}"', thick, header, thick]
    built = getattr(model, "built", True)
    for i, layer in enumerate(model.layers):
        shape = format_shape(layer.output_shape) if built and layer.output_shape else "?"
        first = getattr(layer, "_first_call", None)
        if built and first is not None and isinstance(first[1], list):  # several outputs (return_state)
            shape = "[" + ", ".join(format_shape(t.shape) for t in first[1]) + "]"
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        links = [""]
        if functional:
            links = [f"{name}[{k}][{i}]" for call in model._graph.public_inbound(layer) for name, k, i in call] \
                or ["-"]
        lines.append(row(f"{layer.name} ({type(layer).__name__})", shape, params, links[0]))
        lines += [row("", "", "", link) for link in links[1:]]
        if i < len(model.layers) - 1:
            lines.append(rule)
    lines.append(thick)
    weighted = model._weighted_layers() if built else [l for l in model.layers if l.built]
    total = sum(l.count_params() for l in weighted)
    trainable = sum(int(sum(_size(w.shape) for w in l._weight_specs if w.trainable)) for l in weighted)
    for label, n in (("Total", total), ("Trainable", trainable), ("Non-trainable", total - trainable)):
        lines.append(f" {label} params: {n:,} ({_bytes(n)})")
    return lines


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _bytes(n_params: int) -> str:
    from polykeras.backend import floatx

    size = n_params * (8 if floatx() == "float64" else 4)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}"
        size /= 1024
