"""``polykeras backends --probe MODEL_FILE``: the table ``backend="auto"`` would choose from for a
saved model (``.keras`` or ``.polykeras``), on a synthetic batch of the model's shapes.

A model file saved after ``compile`` carries its optimizer and loss: train steps are timed, with
targets drawn to fit the loss (class indices for a sparse loss, one-hot rows for a categorical
one, 0/1 for a binary one, normal values otherwise). A file without them times predict steps. Integer
inputs (token ids) are drawn below the smallest ``Embedding.input_dim``; unknown (``None``)
dimensions other than the batch are taken as ``--length``. The probe is cached exactly as a ``fit``
with the same batch shape would cache it (:mod:`polykeras.probe_cache`).
"""

from __future__ import annotations

import numpy as np

from polykeras import auto_backend


def add_arguments(parser) -> None:
    """The options of ``polykeras backends`` that run a probe."""
    parser.add_argument("--probe", metavar="MODEL_FILE",
                        help="time backend='auto''s candidates on this model (.keras or .polykeras) and show the table")
    parser.add_argument("--batch-size", type=int, default=32, help="with --probe: the batch size (default 32)")
    parser.add_argument("--length", type=int, default=32,
                        help="with --probe: the size of unknown (None) input dimensions, e.g. sequence length "
                             "(default 32)")
    parser.add_argument("--candidates", help="with --probe: backends to time, comma-separated, or 'all' "
                                             "(default: $POLYKERAS_AUTO_CANDIDATES, else every auto candidate)")
    parser.add_argument("--device", help="with --probe: the device (default: each backend's best)")
    parser.add_argument("--dtype", choices=["float32", "float64"], help="with --probe: the dtype (default: floatx)")
    parser.add_argument("--fresh", action="store_true", help="with --probe: probe again, ignoring the cache")


def probe_file(args) -> int:
    """Run ``polykeras backends --probe``: print the probe's table."""
    from polykeras import backend as _floatx
    from polykeras.cli import UsageError
    from polykeras.models import load_model
    from polykeras.trainer import Trainer

    if args.batch_size < 1 or args.length < 1:
        raise UsageError(f"--batch-size and --length must be positive, got {args.batch_size} and {args.length}")
    try:
        model = load_model(args.probe)
    except FileNotFoundError:
        raise UsageError(f"no model file {args.probe!r}") from None
    dtype = args.dtype or (model._compile_config or {}).get("dtype") or _floatx.floatx()
    training = model._compile_config is not None
    x, y = synthetic_batch(model, args.batch_size, args.length, dtype, training)
    trainer = Trainer(model)
    if training:
        x, y = trainer.prepare(x, y)
        spec = model._training_spec(tuple(a.ndim for a in y) if isinstance(y, tuple) else y.ndim)
    else:
        x, spec = trainer.prepare(x), None
    from polykeras.backends import BackendNotFoundError

    try:
        auto_backend.candidate_infos(args.candidates)
    except (BackendNotFoundError, ValueError) as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    choice = auto_backend.choose(model, spec, (x, y, None), device=args.device, dtype=dtype, parity=False,
                                 names=args.candidates, fresh=args.fresh, announce=False)
    print(choice.table())
    return 0


def synthetic_batch(model, batch_size: int, length: int, dtype: str, targets: bool, seed: int = 0):
    """``(x, y)`` of ``model``'s input and output shapes (``y`` ``None`` without ``targets``)."""
    rng = np.random.default_rng(seed)
    spec = model._spec()
    vocab = min([int(layer.config["input_dim"]) for layer in spec.layers if layer.kind == "Embedding"] or [2])
    xs = []
    for inp in spec.inputs:
        shape = (batch_size,) + tuple(length if d is None else d for d in inp.shape[1:])
        if np.dtype(inp.dtype).kind in "iu":
            xs.append(rng.integers(0, vocab, shape).astype(inp.dtype))
        else:
            xs.append(rng.standard_normal(shape).astype(dtype))
    x = xs[0] if len(xs) == 1 else tuple(xs)
    if not targets:
        return x, None
    losses = model.loss if isinstance(model.loss, list) else [model.loss]
    ys = []
    for loss, out in zip(losses, spec.output_shapes):
        shape = (batch_size,) + tuple(length if d is None else d for d in out[1:])
        kind = getattr(loss, "kind", "")
        if kind.startswith("sparse_"):
            ys.append(rng.integers(0, shape[-1], shape[:-1]))
        elif kind.startswith("categorical_"):
            ys.append(np.eye(shape[-1], dtype=dtype)[rng.integers(0, shape[-1], shape[:-1])])
        elif kind.startswith("binary_"):
            ys.append(rng.integers(0, 2, shape).astype(dtype))
        else:
            ys.append(rng.standard_normal(shape).astype(dtype))
    return x, ys[0] if len(ys) == 1 else tuple(ys)
