"""``model.summary()`` in Keras's table format."""

from __future__ import annotations

from polykeras.layers.base import format_shape


def summary_lines(model, line_length: int = 80) -> list[str]:
    widths = (int(line_length * 0.45), int(line_length * 0.33))
    rule, thick = "─" * line_length, "━" * line_length

    def row(a: str, b: str, c: str) -> str:
        return f"{a:<{widths[0]}}{b:<{widths[1]}}{c:>{line_length - sum(widths)}}"

    lines = [f'Model: "{model.name}"', thick, row("Layer (type)", "Output Shape", "Param #"), thick]
    built = getattr(model, "built", True)
    for i, layer in enumerate(model.layers):
        shape = format_shape(layer.output_shape) if built and layer.output_shape else "?"
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        lines.append(row(f"{layer.name} ({type(layer).__name__})", shape, params))
        if i < len(model.layers) - 1:
            lines.append(rule)
    lines.append(thick)
    total = sum(l.count_params() for l in model.layers)
    trainable = sum(int(sum(_size(w.shape) for w in l._weight_specs if w.trainable)) for l in model.layers)
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
