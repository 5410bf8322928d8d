"""The training half of a Keras 3 ``.keras`` file: the ``compile_config`` in
``config.json`` and the optimizer's variables in ``model.weights.h5``
(``optimizer/vars/<i>``), to and from polykeras's compile settings and
:class:`polykeras.program.OptimizerState` -- so that a compiled model moves
between Keras and polykeras (and through a file back into polykeras) and
training continues with the same moments.

Keras numbers an optimizer's variables (``Optimizer.variables``, as saved) in
the order it creates them: ``iteration``; ``learning_rate`` unless the rate is
a schedule; then, per ``add_optimizer_variables`` call of the optimizer's
``build()`` (:data:`KERAS_SLOT_GROUPS`), one variable per trainable variable
of the model in ``model.trainable_variables`` order -- a call that creates
several slots interleaves them per variable (Adam: the kernel's ``momentum``,
its ``velocity``, the bias's ``momentum``...). Nadam ends with its scalar
``u_product``, which polykeras writes and, on reading, recomputes from the
iteration count. A compiled model that has not trained is written with its
optimizer's initial state (as Keras builds it in ``compile_from_config``), so
Keras loads it without a "skipping variable loading" warning.

:func:`restore_training` reads a file back into a model of the same
architecture by position (what BackupAndRestore needs), with the
``training_state`` polykeras keeps in ``metadata.json``.
"""

from __future__ import annotations

import warnings

import numpy as np

from polykeras.saving.keras_format import KerasFileError

#: Per optimizer kind, the slots of each ``add_optimizer_variables`` call of Keras's ``build()``, in
#: order (keras/src/optimizers/*.py); the slots of one call are interleaved per variable.
KERAS_SLOT_GROUPS = {
    "SGD": [("momentum",)], "Adam": [("momentum", "velocity"), ("velocity_hat",)],
    "AdamW": [("momentum", "velocity"), ("velocity_hat",)],
    "RMSprop": [("velocity",), ("momentum",), ("average_gradient",)], "Adagrad": [("accumulator",)],
    "Nadam": [("momentum", "velocity")], "Adamax": [("momentum", "norm")],
    "Adadelta": [("accumulated_grad", "accumulated_delta_var")], "Lion": [("momentum",)],
    "Ftrl": [("accumulator", "linear")],
}


def _groups(spec: dict) -> list[tuple[str, ...]]:
    from polykeras.optimizers import slot_names

    present = set(slot_names(spec))
    groups = [tuple(s for s in group if s in present) for group in KERAS_SLOT_GROUPS[spec["kind"]]]
    return [g for g in groups if g]


def trainable_order(model, keras_layers: list[str]) -> list[int]:
    """For each of Keras's trainable variables (the trainable weights of ``keras_layers``, polykeras
    layer names in Keras's layer order), its index among polykeras's trainable weights (spec order)."""
    spec = model._spec()
    index = {(layer.name, w.name): i
             for i, (layer, w) in enumerate((l, w) for l, w in spec.weight_specs if w.trainable)}
    by_name: dict[str, list] = {}  # input layers (no weights) are not in the spec
    for layer in spec.layers:  # a traced layer's variables ("<layer>/<name>") belong to it, in Keras's order
        by_name.setdefault(layer.name.rsplit("/", 1)[0] if layer.kind == "Variable" else layer.name, []).append(layer)
    from polykeras.saving.keras_custom import is_custom, keras_weight_order
    from polykeras.saving.keras_traced import traced_owners

    customs = {owner.name: owner for owner in traced_owners(model).values() if is_custom(owner)}
    out = []
    for name in keras_layers:
        if name in customs:  # Keras's layer.trainable_variables: its own, then its layers', as Keras tracks them
            out += [index[key] for key in keras_weight_order(customs[name]) if key in index]
        else:
            out += [index[(layer.name, w.name)] for layer in by_name.get(name, []) for w in layer.weights
                    if w.trainable]
    return out


def _u_product(beta_1: float, iterations: int) -> float:
    """Keras's Nadam ``u_product`` after ``iterations`` updates (zero once it underflows)."""
    u = 1.0
    for t in range(1, iterations + 1):
        u *= beta_1 * (1.0 - 0.5 * 0.96 ** t)
        if u == 0.0:
            break
    return u


def _initial_state(model, spec: dict):
    from polykeras.program import OptimizerState

    shapes = [w.shape for _, w in model._spec().weight_specs if w.trainable]
    dtype = model._host_weights()[0].dtype if model._host_weights() else np.float32
    start = spec["config"].get("initial_accumulator_value", 0.0)
    slots = {slot: [np.full(shape, start if slot == "accumulator" else 0.0, dtype) for shape in shapes]
             for group in _groups(spec) for slot in group}
    return OptimizerState(0, slots)


def optimizer_variables(model, order: list[int]) -> list[np.ndarray]:
    """Keras's ``optimizer.variables`` of a compiled ``model`` (see the module docstring);
    ``order`` from :func:`trainable_order`."""
    optimizer = model.optimizer
    spec = optimizer.to_spec()
    state = model._optimizer_state()
    weights = model._host_weights()
    dtype = weights[0].dtype if weights else np.dtype(np.float32)
    if state is None and not optimizer.iterations:
        state = _initial_state(model, spec)
    # still None: trained on a backend that does not hand out its state -- the count alone, whose slots a
    # reader (Keras or polykeras) then skips with a warning
    out = [np.asarray(optimizer.iterations if state is None else state.iterations, np.int64)]
    if optimizer.schedule is None:
        out.append(np.asarray(optimizer.learning_rate, dtype))
    if state is None:
        return out
    for group in _groups(spec):
        out += [np.asarray(state.slots[slot][i]) for i in order for slot in group]
    if spec["kind"] == "Nadam":
        out.append(np.asarray(_u_product(spec["config"]["beta_1"], state.iterations), dtype))
    return out


def read_optimizer_variables(model, values: list[np.ndarray], order: list[int], path):
    """Set a compiled ``model``'s learning rate and pending optimizer state from Keras's
    ``optimizer.variables`` (``values``); a layout that does not match the optimizer is skipped with
    a warning, as Keras skips it (the moments restart)."""
    from polykeras.program import OptimizerState

    optimizer = model.optimizer
    spec = optimizer.to_spec()
    if not values:
        return
    iterations = int(np.asarray(values[0]).item())
    rest = list(values[1:])
    if optimizer.schedule is None and rest:
        rate = np.asarray(rest.pop(0))
        if rate.shape != () or not np.isfinite(rate):
            raise KerasFileError(f"{path}: the optimizer's learning rate is {rate!r}, not a number")
        if rate.dtype == np.float64 or np.float32(optimizer.learning_rate) != rate:  # keep the config's digits
            optimizer.learning_rate = float(rate)
    groups = _groups(spec)
    expected = sum(len(g) for g in groups) * len(order) + (spec["kind"] == "Nadam")
    if iterations <= 0:
        return
    shapes = [w.shape for _, w in model._spec().weight_specs if w.trainable]
    if len(rest) != expected or sorted(order) != list(range(len(shapes))):
        warnings.warn(f"{path}: the optimizer {type(optimizer).__name__} has {expected} slot variables for this "
                      f"model, the file holds {len(rest)}; its state is not restored and its moments restart from "
                      "zero", RuntimeWarning, stacklevel=4)
        return
    slots = {slot: [None] * len(shapes) for group in groups for slot in group}
    stored = iter(rest)
    for group in groups:
        for i in order:
            for slot in group:
                value = np.asarray(next(stored))
                if value.shape != tuple(shapes[i]):
                    raise KerasFileError(f"{path}: optimizer slot {slot!r} of trainable weight {i} has shape "
                                         f"{value.shape}, the weight has {tuple(shapes[i])}")
                slots[slot][i] = value
    model._pending_optimizer_state = OptimizerState(iterations, slots)


# -- compile_config -------------------------------------------------------------------------------
def _keras_object(value: dict, module: str) -> dict:
    if value["class_name"] == "function":  # a function of the user's, by its registered name, as Keras writes one
        return {"module": "builtins", "class_name": "function", "config": value["config"],
                "registered_name": "function"}
    return {"module": module, "class_name": value["class_name"], "config": value.get("config", {}),
            "registered_name": None}


def _keras_metrics(value):
    """Metrics (names, serialised objects, in lists or dicts by output) in Keras's form."""
    if isinstance(value, dict) and "class_name" in value:
        return _keras_object(value, "keras.metrics")
    if isinstance(value, (list, tuple)):
        return [_keras_metrics(v) for v in value]
    if isinstance(value, dict):
        return {k: _keras_metrics(v) for k, v in value.items()}
    return value


def keras_compile_config(model) -> dict:
    """Keras's ``compile_config`` of a compiled polykeras model."""
    config = model.get_compile_config()
    loss = config["loss"]
    per_output = isinstance(loss, dict) and "class_name" not in loss
    return {"optimizer": _keras_object(config["optimizer"], "keras.optimizers"),
            "loss": ({k: _keras_object(v, "keras.losses") for k, v in loss.items()} if per_output
                     else _keras_object(loss, "keras.losses")),
            "loss_weights": config.get("loss_weights"), "metrics": _keras_metrics(config.get("metrics") or None),
            "weighted_metrics": _keras_metrics(config.get("weighted_metrics") or None), "run_eagerly": False,
            # Keras 3 takes an integer only: "auto" is written as 1
            "steps_per_execution": 1 if config.get("steps_per_execution") == "auto" else
            config.get("steps_per_execution", 1)}


def _loss(value):
    if isinstance(value, dict) and isinstance(value.get("config"), dict):
        return {"class_name": value["class_name"],
                "config": {k: v for k, v in (value.get("config") or {}).items() if k != "dtype"}}
    return value


def _metric(value):
    """Keras's metrics as polykeras reads them: names, and objects without Keras's ``dtype``."""
    if isinstance(value, dict) and "class_name" in value and not isinstance(value.get("config"), dict):
        return value  # a function of the user's, by name
    if isinstance(value, dict) and "class_name" in value:
        return {"class_name": value["class_name"],
                "config": {k: v for k, v in (value.get("config") or {}).items() if k != "dtype"}}
    if isinstance(value, (list, tuple)):
        return [_metric(v) for v in value]
    if isinstance(value, dict):
        return {k: _metric(v) for k, v in value.items()}
    return value


def compile_from_keras(model, compile_config: dict) -> None:
    """Compile ``model`` from Keras's ``compile_config`` (``_plain``-ed: no ``module`` keys)."""
    optimizer = compile_config["optimizer"]
    if isinstance(optimizer, dict):
        options = optimizer.get("config") or {}
        used = [k for k in ("use_ema", "gradient_accumulation_steps", "loss_scale_factor") if options.get(k)]
        if used:
            raise NotImplementedError(f"optimizer option(s) {', '.join(used)}")
    loss = compile_config["loss"]
    if isinstance(loss, dict) and "class_name" not in loss:
        loss = {k: _loss(v) for k, v in loss.items()}
    elif isinstance(loss, (list, tuple)):
        names = model.output_names
        loss = dict(zip(names, map(_loss, loss))) if len(loss) == len(names) > 1 else _loss(loss[0])
    else:
        loss = _loss(loss)
    model.compile_from_config({"optimizer": optimizer, "loss": loss, "metrics": _metric(compile_config.get("metrics")),
                               "weighted_metrics": _metric(compile_config.get("weighted_metrics")),
                               "loss_weights": compile_config.get("loss_weights"),
                               "steps_per_execution": compile_config.get("steps_per_execution") or 1})


# -- restoring a run ----------------------------------------------------------------------------------
def restore_training(model, path) -> dict | None:
    """Put the weights and optimizer state of a ``.keras`` file into ``model`` (compiled, the same
    architecture), by position in Keras's layer order -- so automatic layer names may differ, as in
    a restarted process -- and return the ``training_state`` polykeras put into its
    ``metadata.json`` (``None`` if there is none)."""
    import hashlib
    import io
    import json
    import zipfile

    import h5py

    from polykeras.saving.keras_custom import is_custom, read_weights
    from polykeras.saving.keras_format import read_vars, weight_paths
    from polykeras.saving.keras_traced import traced_owners
    from polykeras.saving.keras_write import keras_layout
    from polykeras.saving.portable import _assign

    _, saved = keras_layout(model)
    with zipfile.ZipFile(path) as zf:
        weights_bytes = zf.read("model.weights.h5")
        meta = json.loads(zf.read("metadata.json")) if "metadata.json" in zf.namelist() else {}
    ours = meta.get("polykeras") or {}
    expected = ours.get("weights_sha256")
    if expected is not None and hashlib.sha256(weights_bytes).hexdigest() != expected:
        raise KerasFileError(f"{path}: the weights do not match their checksum; delete the backup to start over")
    customs = {owner.name: owner for owner in traced_owners(model).values() if is_custom(owner)}
    custom: dict[int, list] = {}  # a custom layer's arrays, by id() of the variable or layer they belong to
    with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
        arrays = {}
        for e, group in zip(saved, weight_paths([e["class_name"] for e in saved])):
            name = e["config"]["name"]
            if name in customs:
                custom.update(read_weights(h5, customs[name], group, path))
            else:
                arrays[name] = read_vars(h5, group, e["class_name"], path, e["config"])
        stored = h5.get("optimizer/vars")
        values = [] if stored is None else [np.asarray(stored[str(i)]) for i in range(len(stored))]
    spec = model._spec()
    keras_order = [e["config"]["name"] for e in saved]
    for node, layer in zip(model._graph.nodes, spec.layers):  # a custom layer's: by the graph node of each holder
        if id(node.layer) in custom and layer.weights_of is None:
            arrays[layer.name] = custom.pop(id(node.layer))
    ordered = {}
    for layer in spec.layers:
        if layer.weights_of is None:
            ordered.update({f"{layer.name}/{w.name}": a for w, a in zip(layer.weights, arrays.get(layer.name, []))})
    _assign(model, ordered, path, keep_dtype=True, by_position=True)
    model._push_weights()
    model._pending_optimizer_state = None
    read_optimizer_variables(model, values, trainable_order(model, keras_order), path)
    return ours.get("training_state")
