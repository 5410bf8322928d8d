"""The data a model is given, checked against it and put in the form a
program receives.

``x`` is one array for a single-input model and a tuple of arrays, in the
order of ``spec.inputs``, for a model of several inputs; the user may give
those as a list (the order of ``Model(inputs=[...])``) or a dict keyed by input
name, as in Keras. The helpers below slice and reorder either form alike, so
the trainer's loop does not care how many inputs a model has.
"""

from __future__ import annotations

import numpy as np

from polykeras.layers.base import format_shape


# -- one array or a tuple (or list) of arrays, alike --------------------------------------------
def n_samples(x) -> int:
    return len(x[0]) if isinstance(x, (tuple, list)) else len(x)


def rows(x, lo: int, hi: int | None):
    """Samples ``lo:hi`` (a tuple's ``None`` entries -- unweighted outputs -- stay ``None``)."""
    return tuple(None if a is None else a[lo:hi] for a in x) if isinstance(x, (tuple, list)) else x[lo:hi]


def take(x, order: np.ndarray):
    return tuple(None if a is None else a[order] for a in x) if isinstance(x, (tuple, list)) else x[order]


def stacked(x, lo: int, hi: int, k: int):
    """Samples ``lo:hi`` as ``k`` batches stacked on a new leading axis."""
    def stack(a):
        return None if a is None else a[lo:hi].reshape((k, (hi - lo) // k) + a.shape[1:])
    return tuple(stack(a) for a in x) if isinstance(x, tuple) else stack(x)


# -- inputs ------------------------------------------------------------------------------------
def prepare_x(model, x, float_dtype: str):
    """``x`` checked against ``model``'s inputs: one array, or a tuple in
    ``spec.inputs`` order for a model of several inputs."""
    if x is None:
        raise ValueError("no input data: pass x (a NumPy array, or a list/dict of arrays for several inputs)")
    if hasattr(model, "_ensure_built") and not model.built:
        first = next(iter(x.values())) if isinstance(x, dict) else (
            x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x)
        model._ensure_built(np.shape(first))
    if hasattr(model, "_build_from_data") and not model.built:  # a subclassed model's first data
        model._build_from_data(x)
    spec = model._spec()
    names = [i.name for i in spec.inputs]
    if isinstance(x, dict):
        unknown = sorted(set(map(str, x)) - set(names))
        if unknown:
            raise ValueError(f"x has key(s) {unknown} that name no input of model {model.name!r}; its inputs are "
                             f"{names}")
        missing = [n for n in names if n not in x]
        if missing:
            raise ValueError(f"x has no array for input(s) {missing} of model {model.name!r}")
        arrays = [x[n] for n in names]
    elif isinstance(x, (list, tuple)) and len(names) > 1:
        if len(x) != len(names):
            raise ValueError(f"model {model.name!r} has {len(names)} inputs ({', '.join(names)}), got a list of "
                             f"{len(x)} arrays")
        arrays = list(x)
    elif len(names) > 1:
        raise ValueError(f"model {model.name!r} has {len(names)} inputs ({', '.join(names)}): pass x as a list of "
                         "arrays in that order or a dict keyed by input name")
    else:
        arrays = [x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x]
    out = tuple(_check_input(model, inp, a, float_dtype) for inp, a in zip(spec.inputs, arrays))
    lengths = {len(a) for a in out}
    if len(lengths) > 1:
        raise ValueError(f"the input arrays of model {model.name!r} have different numbers of samples: "
                         f"{dict(zip(names, (len(a) for a in out)))}")
    return out if len(out) > 1 else out[0]


def _check_input(model, inp, x, float_dtype: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == object:
        raise TypeError("x has dtype object (ragged lists?); pad sequences to one length first, e.g. with "
                        "polykeras.utils.pad_sequences")
    if x.ndim == 0:
        raise ValueError("x must have a batch dimension; got a scalar")
    expected = inp.shape
    if len(x.shape) != len(expected) or any(e is not None and e != g for e, g in zip(expected[1:], x.shape[1:])):
        spec = model._spec()
        readers = [l for l in spec.layers if inp.name in l.inbound]
        where = (f"its first layer {readers[0].name!r} ({readers[0].kind})" if len(spec.inputs) == 1 and readers
                 else f"its input {inp.name!r}")
        hint = ""
        if len(x.shape) > len(expected) and np.prod(x.shape[1:]) == np.prod([d for d in expected[1:] if d]):
            hint = (f" Reshape it with x.reshape(len(x), {', '.join(str(d) for d in expected[1:])}) or add a "
                    "Flatten layer.")
        raise ValueError(f"input data does not match model {model.name!r}: {where} expects shape "
                         f"{format_shape(expected)}, got an array of shape {x.shape}.{hint}")
    if np.dtype(inp.dtype).kind in "iu":
        if x.dtype.kind == "f" and not np.all(np.mod(x, 1) == 0):
            raise ValueError(f"model {model.name!r} takes integer indices at input {inp.name!r} (it feeds an "
                             "Embedding) but x holds non-integer values")
        return x.astype(np.int32, copy=False)
    return x.astype(float_dtype, copy=False)


# -- targets -----------------------------------------------------------------------------------
def prepare_y(model, y, n: int, float_dtype: str):
    """``y`` checked against the model's outputs and losses: one array, or for
    a model of several outputs a tuple in ``spec.outputs`` order (given as a
    list in output order or a dict keyed by output name)."""
    if y is None:
        raise ValueError("no targets: pass y (a NumPy array, or a list/dict of arrays for several outputs)")
    shapes = model._spec().output_shapes
    if len(shapes) == 1:
        return _check_target(y, n, shapes[0], model.loss.kind, float_dtype, "")
    names = model.output_names
    if isinstance(y, dict):
        unknown = sorted(set(map(str, y)) - set(names))
        missing = [name for name in names if name not in y]
        if unknown or missing:
            raise ValueError(f"y must have one array per output of model {model.name!r} ({names}); "
                             + (f"key(s) {unknown} name no output" if unknown else f"missing {missing}"))
        arrays = [y[name] for name in names]
    elif isinstance(y, (list, tuple)) and len(y) == len(names):
        arrays = list(y)
    else:
        raise ValueError(f"model {model.name!r} has {len(names)} outputs ({', '.join(names)}): pass y as a list of "
                         "arrays in that order or a dict keyed by output name")
    return tuple(_check_target(a, n, shape, loss.kind, float_dtype, f" for output {name!r}")
                 for a, shape, loss, name in zip(arrays, shapes, model.loss, names))


def _check_target(y, n: int, out: tuple, loss: str, float_dtype: str, where: str) -> np.ndarray:
    y = np.asarray(y)
    if len(y) != n:
        raise ValueError(f"x and y{where} have different numbers of samples: {n} and {len(y)}")
    if loss == "sparse_categorical_crossentropy":
        if y.ndim == len(out) and y.shape[-1] == 1:
            y = y.reshape(y.shape[:-1])
        if y.ndim != len(out) - 1:
            raise ValueError(f"sparse_categorical_crossentropy takes integer class labels of shape (n,), got y{where} "
                             f"of shape {y.shape}; for one-hot targets use loss='categorical_crossentropy'")
        if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
            raise ValueError(f"sparse_categorical_crossentropy takes integer class labels; y{where} holds fractions")
        if y.size and (y.min() < 0 or y.max() >= out[-1]):
            raise ValueError(f"class labels must be in [0, {out[-1] - 1}] for an output of {out[-1]} classes; "
                             f"y{where} ranges over [{y.min()}, {y.max()}]")
        return y.astype(np.int32)
    if loss == "categorical_crossentropy" and (y.ndim == len(out) - 1 or (y.shape[-1] == 1 and out[-1] != 1)):
        raise ValueError(
            f"categorical_crossentropy expects one-hot targets of shape (n, {out[-1]}), got y{where} of shape "
            f"{y.shape} (integer labels?). Use loss='sparse_categorical_crossentropy', or convert the labels with "
            f"polykeras.utils.to_categorical(y, {out[-1]})"
        )
    if y.ndim == len(out) - 1 and out[-1] == 1:
        y = y[..., None]
    if not _fits(y.shape[1:], tuple(out[1:])) and loss:  # a traced loss function reads targets of any shape
        raise ValueError(f"targets{where} of shape {y.shape} do not match the model output {format_shape(out)}")
    return y.astype(float_dtype, copy=False)


def ndims(y):
    """The rank of the targets (a tuple of ranks for several outputs): what metrics are resolved for."""
    return tuple(a.ndim for a in y) if isinstance(y, tuple) else y.ndim


# -- sample weights ------------------------------------------------------------------------------
def prepare_sample_weight(model, sample_weight, class_weight, y, n: int, float_dtype: str):
    """Per-sample loss weights, Keras's ``sample_weight``/``class_weight``, in the form a program
    receives; ``None`` without weights.

    Each weights array is ``(n,)``, or ``(n, T)`` for a sequence output. ``class_weight``
    (``{class: weight}``, Keras's rule: a sample's label -- the argmax of a one-hot row -- picks
    its weight, 1 for classes not listed) is for models of one output, as in Keras. For a model
    of several outputs, one array weights every output (returned as that array), while a list
    (output order) or dict (output names; outputs it leaves out are unweighted) gives each output
    its own weights: returned as a tuple in ``spec.outputs`` order, ``None`` for an unweighted
    output (the form :meth:`polykeras.program.Program.train_step` documents)."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError("give sample_weight or class_weight, not both (as in Keras); fold the class weights into "
                         "the sample weights instead")
    if sample_weight is None and class_weight is None:
        return None
    shapes = model._spec().output_shapes
    names = _output_names(model) if len(shapes) > 1 or isinstance(sample_weight, dict) else [None]
    if class_weight is not None:
        if len(shapes) > 1:
            raise ValueError(f"class_weight is only supported for models of one output (as in Keras); model "
                             f"{model.name!r} has {len(shapes)} ({', '.join(names)}). Give per-output sample_weight "
                             "instead: a dict {output name: weights} or a list in output order")
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight must be a dict {{class index: weight}}, got {type(class_weight).__name__}")
        labels = np.asarray(y)
        if labels.ndim > 1:
            labels = labels.argmax(axis=-1) if labels.shape[-1] != 1 else labels[..., 0]
        labels = np.round(labels).astype(np.int64).reshape(len(labels), -1)[:, 0]
        sample_weight = np.array([float(class_weight.get(int(c), 1.0)) for c in labels])
        return _check_weights(sample_weight, n, [shapes[0]], float_dtype, "")
    if isinstance(sample_weight, dict):
        unknown = sorted(set(map(str, sample_weight)) - set(names))
        if unknown:
            raise ValueError(f"sample_weight has key(s) {unknown} that name no output of model {model.name!r}; its "
                             f"outputs are {names}")
        entries = [sample_weight.get(name) for name in names]
    elif isinstance(sample_weight, (list, tuple)) and (len(shapes) > 1 or (
            len(sample_weight) == 1 and np.ndim(sample_weight[0]) >= 1)):
        if len(sample_weight) != len(names):
            raise ValueError(f"model {model.name!r} has {len(names)} outputs ({', '.join(names)}): a list of "
                             f"sample weights needs one entry per output, in that order (an array, or None for an "
                             f"unweighted output), got {len(sample_weight)}; or give one array for every output, "
                             "or a dict keyed by output name")
        entries = list(sample_weight)
    else:  # one array: the single output's weights, or every output's
        return _check_weights(sample_weight, n, shapes, float_dtype, "")
    weights = tuple(None if w is None else _check_weights(w, n, [shape], float_dtype, f" for output {name!r}")
                    for w, shape, name in zip(entries, shapes, names))
    if all(w is None for w in weights):
        return None
    return weights if len(weights) > 1 else weights[0]


def _output_names(model) -> list[str]:
    """The names ``y`` and ``sample_weight`` dicts are keyed by (a subclassed model of one output: its name)."""
    try:
        return list(model.output_names)
    except AttributeError:  # no graph of its own
        return [model.name]


def _check_weights(w, n: int, shapes, float_dtype: str, where: str) -> np.ndarray:
    """``w`` as an array of the program's dtype that fits the per-sample losses of each of ``shapes``."""
    try:
        w = np.asarray(w, dtype=float_dtype)
    except (TypeError, ValueError):
        raise ValueError(f"sample_weight{where} must be an array of numbers, one per sample (shape ({n},)); got "
                         f"{type(w).__name__}") from None
    if w.ndim == 0:
        raise ValueError(f"sample_weight{where} must be an array of one weight per sample (shape ({n},)), got a "
                         "scalar")
    for shape in shapes:
        per_sample = tuple(shape[:-1])  # the shape of the per-sample losses, batch first
        if len(w) != n or w.ndim > len(per_sample) or w.shape[1:] != tuple(
                d if d is not None else w.shape[i + 1] for i, d in enumerate(per_sample[1:w.ndim])):
            raise ValueError(f"sample_weight{where} of shape {w.shape} does not fit {n} samples whose losses have "
                             f"shape {format_shape((n,) + per_sample[1:])}: give one weight per sample (shape "
                             f"({n},))")
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError(f"sample_weight{where} holds negative, NaN or infinite values")
    return w


# -- outputs -----------------------------------------------------------------------------------
def join_outputs(model, batches: list, float_dtype: str):
    """Per-batch predictions joined: one array, or for a model of several
    outputs a list (a dict when the model's outputs were given as a dict)."""
    shapes = model._spec().output_shapes
    if len(shapes) == 1:
        if not batches:
            return np.zeros((0,) + tuple(shapes[0][1:]), dtype=float_dtype)
        return np.concatenate(batches)
    joined = [np.concatenate([b[i] for b in batches]) if batches else np.zeros((0,) + tuple(s[1:]), float_dtype)
              for i, s in enumerate(shapes)]
    return dict(zip(model._output_names, joined)) if model._output_names else joined


def _fits(shape: tuple, model_shape: tuple) -> bool:
    """Whether targets of ``shape`` (batch axis left out) fit an output of ``model_shape``, whose
    unknown sizes (``None``: a sequence of any length, e.g. a decoder's) take any size."""
    return len(shape) == len(model_shape) and all(m is None or s == m for s, m in zip(shape, model_shape))
