"""The training half of the Keras model API: ``compile``, ``fit``,
``evaluate``, ``predict`` and their single-batch forms, over a backend program
that the model compiles when it is first needed (see :class:`TrainingAPI`).
"""

from __future__ import annotations

import os

import numpy as np

from polykeras import loss_masks as _loss_masks
from polykeras import losses as _losses
from polykeras import metrics as _metrics
from polykeras import optimizers as _optimizers
from polykeras import steps_per_execution as _steps_per_execution
from polykeras.metrics.statistics import is_summed
from polykeras.models.outputs import OutputsConfig
from polykeras.spec import TrainingSpec


class TrainingAPI:
    """Mixed into :class:`~polykeras.models.model.Model`; the loop itself is
    :class:`polykeras.trainer.Trainer`'s."""

    # -- compile -------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, weighted_metrics=None,
                run_eagerly: bool = False, steps_per_execution: int | str = 1, jit_compile="auto",
                auto_scale_loss=True,
                *, backend: str | None = None, device: str | None = None, dtype: str | None = None,
                parity: bool = False, distribution=None) -> None:
        """Keras's ``compile``, plus polykeras's choice of ``backend``, ``device``
        and ``dtype`` (defaults: ``POLYKERAS_BACKEND``, the backend's best device,
        ``floatx()``), ``parity`` (dropout masks drawn by the core, so runs
        compare step by step across backends) and ``distribution`` (a
        :class:`polykeras.distribution.DataParallel`; default: the one
        :func:`polykeras.distribution.set_distribution` set when the program is built).
        ``steps_per_execution`` is an integer, or ``"auto"``: ``fit`` times its first steps and
        picks the number (:mod:`polykeras.steps_per_execution`). ``backend="auto"`` runs the model
        on the fastest installed backend, timed on its first call's batch (:mod:`polykeras.auto_backend`)."""
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        steps_per_execution = _steps_per_execution.check(steps_per_execution)
        for what, value in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if value is not None and not isinstance(value, (list, tuple, dict)):
                raise TypeError(f"{what} must be a list (or, for several outputs, a list per output or a dict "
                                f"keyed by output name), got {type(value).__name__}: {value!r}")
        self._pull_weights()
        previous = getattr(self, "optimizer", None)
        self.optimizer = _optimizers.get(optimizer)
        # Keras: the same optimizer object keeps its state (moments, iterations) through compile(); a new one
        # starts afresh. The state is canonical, so it carries to a new backend or dtype too.
        kept = self._optimizer_state() if previous is not None and self.optimizer is previous else None
        if kept is not None and self._pending_optimizer_state is None:
            kept = _follow_trainable(kept, getattr(self, "_trained_weights", None), self._spec())
        names = self.output_names if self._graph is not None else [self.name]
        self._outputs_config = None
        if len(names) > 1:  # Keras's per-output losses, weights and metrics
            self._outputs_config = OutputsConfig(names, loss, loss_weights, metrics, weighted_metrics)
            self.loss, self._metric_ids, self._weighted_metric_ids = list(self._outputs_config.losses), [], []
        else:
            weights = loss_weights if isinstance(loss_weights, (list, tuple)) else [loss_weights]
            if len(weights) != 1 or weights[0] not in (None, 1, 1.0):
                raise NotImplementedError(f"loss_weights={loss_weights!r} on a model of one output is not supported; "
                                          "scale the learning rate instead")
            self.loss = _losses.get(loss[0] if isinstance(loss, (list, tuple)) and len(loss) == 1 else loss)
            self._metric_ids = list(metrics or [])
            self._weighted_metric_ids = list(weighted_metrics or [])
            # fail now on a typo, with the valid names
            self._metric_ids = _metrics.check(self._metric_ids, self.loss.kind)
            self._weighted_metric_ids = _metrics.check(self._weighted_metric_ids, self.loss.kind, "weighted_metrics")
        self._steps_per_execution = steps_per_execution
        self._auto_steps_per_execution = None  # what "auto" measured, for the next fit (polykeras.trainer)
        self._auto_backend = None  # what backend="auto" chose (at the first program)
        if distribution is not None:
            from polykeras.distribution import DataParallel

            if not isinstance(distribution, DataParallel):
                raise TypeError(f"compile(distribution=...) takes a polykeras.distribution.DataParallel, got "
                                f"{type(distribution).__name__}")
        self._compile_config = {"backend": backend, "device": device, "dtype": dtype, "parity": bool(parity),
                                "distribution": distribution}
        self._pending_optimizer_state = kept
        self._program = None
        self._program_key = None

    @property
    def compiled(self) -> bool:
        return self._compile_config is not None

    def _training_spec(self, y_ndim) -> TrainingSpec:
        """For targets of rank ``y_ndim`` (a tuple of ranks, one per output, for several outputs)."""
        if self._outputs_config is not None:
            spec = self._spec()
            ndims = y_ndim if isinstance(y_ndim, tuple) else tuple(len(s) for s in spec.output_shapes)
            outputs = self._outputs_config.training(list(spec.outputs), spec.output_shapes, ndims)
            return _loss_masks.mark_masked(self, TrainingSpec(self.optimizer.to_spec(), outputs[0].loss, (), outputs))
        out_shape, kind = self.output_shape, self.loss.kind
        plain, weighted = _metrics.unique_names(
            [("", _metrics.resolve(m, kind, y_ndim, out_shape)) for m in self._metric_ids],
            [("", _metrics.resolve(m, kind, y_ndim, out_shape, weighted=True)) for m in self._weighted_metric_ids])
        return _loss_masks.mark_masked(
            self, TrainingSpec(self.optimizer.to_spec(), self.loss.to_spec(out_shape, y_ndim), tuple(plain + weighted)))

    def _get_program(self, training: bool, y_ndim: int | None = None, batch=None):
        """The compiled program, (re)built when first needed or when what it
        was built for changed. Weights carry over from the previous program.
        ``batch`` (``(x, y, sample_weight)``, the call's first) is what ``backend="auto"`` times."""
        if training and self._compile_config is None:
            raise RuntimeError(f"model {self.name!r} must be compiled before training or evaluation: call "
                               "model.compile(optimizer=..., loss=...) first")
        cfg = self._compile_config or {}
        training_spec = None
        if training:
            if y_ndim is None:
                y_ndim = tuple(len(s) for s in self._spec().output_shapes)
                y_ndim = y_ndim[0] if len(y_ndim) == 1 else y_ndim
            training_spec = self._training_spec(y_ndim)
        key = (training_spec, id(self._spec()))
        if self._program is not None and (self._program_key == key or (not training and self._program_key)):
            self._claim_weights()
            return self._program
        from polykeras.backends import get_backend

        self._claim_weights()
        self._pull_weights()
        # the optimizer's state carries over to a rebuilt program (and a loaded model's, to its first)
        state = self._optimizer_state() if training else None
        if state is not None and self._pending_optimizer_state is None:  # a trainable flag may have changed
            state = _follow_trainable(state, getattr(self, "_trained_weights", None), self._spec())
        backend = get_backend(self._backend_name(training_spec, batch), cfg.get("device"), cfg.get("dtype"))
        self._check_supported(backend)
        if training_spec is not None:
            _check_metrics(backend, training_spec)
        weights = [w.astype(backend.dtype, copy=False) for w in self._host_weights()]
        self._program = backend.compile(self._spec(), weights, training_spec, parity=cfg.get("parity", False))
        from polykeras import distribution as _distribution

        spread = cfg.get("distribution") or _distribution.distribution()
        if spread is not None:
            self._program = _distribution.distribute(backend, self._program, spread)
        self._program = _loss_masks.wrap(self, backend, self._program, training_spec)
        self._program_key = key
        self._weights_stale = False
        if training:
            self._trained_weights = _trainable_keys(self._spec())
            self.optimizer._bind(self._program)
            if state is not None:
                self._restore_optimizer_state(backend, training_spec, state)
        return self._program

    def _backend_name(self, training_spec, batch) -> str | None:
        """The backend ``compile`` named; for ``"auto"``, the one :mod:`polykeras.auto_backend` chose
        for this model, at its first program (on that call's ``batch``), kept until ``compile``."""
        from polykeras import auto_backend, backends
        from polykeras import backend as _floatx

        cfg = self._compile_config or {}
        name = cfg.get("backend") or backends.selected_backend_name()
        if name != auto_backend.AUTO:
            return name
        if getattr(self, "_auto_backend", None) is None:
            from polykeras import distribution as _distribution

            if cfg.get("distribution") or _distribution.distribution() is not None:
                raise NotImplementedError("backend 'auto' does not choose among distributed backends; name the "
                                          "backend (torch or jax) with a distribution")
            if batch is None:
                raise RuntimeError(f"model {self.name!r}: backend 'auto' chooses by timing steps on the data of "
                                   "fit/evaluate/predict; call one of them first, or name a backend")
            choice = auto_backend.choose(self, training_spec, batch, dtype=cfg.get("dtype") or _floatx.floatx(),
                                         device=cfg.get("device") or os.environ.get("POLYKERAS_DEVICE"),
                                         parity=bool(cfg.get("parity")))
            self._auto_backend = choice.name
        return self._auto_backend

    def _optimizer_state(self):
        """The optimizer's state in canonical form (:class:`polykeras.program.OptimizerState`): a loaded
        model's not yet applied, else the training program's once it has taken a step; ``None`` without."""
        if self._pending_optimizer_state is not None:
            return self._pending_optimizer_state
        program = self._program
        backend = getattr(program, "backend", None)
        if (program is None or not self._program_key or self._program_key[0] is None or not program.iterations
                or "optimizer_state" not in getattr(backend, "training_features", ())):
            return None
        return program.get_optimizer_state()

    def _apply_pending_optimizer_state(self) -> None:
        """Hand a restored optimizer state to the training program that already runs (BackupAndRestore)."""
        if self._pending_optimizer_state is not None and self._program is not None and self._program_key[0]:
            self._restore_optimizer_state(self._program.backend, self._program_key[0],
                                          self._pending_optimizer_state)

    def _restore_optimizer_state(self, backend, training_spec, state) -> None:
        import warnings

        self._pending_optimizer_state = None
        expected = set(_optimizers.slot_names(training_spec.optimizer))
        if "optimizer_state" not in backend.training_features or set(state.slots) != expected:
            warnings.warn(f"model {self.name!r}: the optimizer state ({state.iterations} updates, slots "
                          f"{sorted(state.slots)}) cannot be restored on backend {backend.name!r} for this "
                          f"optimizer (slots {sorted(expected)}); its moments restart from zero", RuntimeWarning,
                          stacklevel=4)
            return
        self._program.set_optimizer_state(state)

    def add_loss(self, loss) -> None:
        """Keras's ``add_loss`` inside a subclassed model's ``call()`` (see :mod:`polykeras.layers.added_loss`)."""
        from polykeras.layers.added_loss import add_loss

        add_loss(self, loss)

    def _check_supported(self, backend) -> None:
        spec = self._spec()
        lacking = sorted(spec.features - backend.graph_features)
        if lacking:
            raise NotImplementedError(
                f"backend {backend.name!r} does not run models with {', '.join(f.replace('_', ' ') for f in lacking)} "
                f"(model {spec.name!r}; a backend declares what it runs in Backend.graph_features); choose another "
                "backend, `polykeras backends` lists them")
        missing = [k for k in spec.kinds if backend.layer_kinds and k not in backend.layer_kinds]
        if missing:
            from polykeras.backends import backend_infos

            having = {k: [n for n, i in backend_infos().items() if k in i.layer_kinds and i.installed] for k in missing}
            detail = "; ".join(f"{k} is implemented by: {', '.join(v) or 'no installed backend'}" for k, v in having.items())
            raise NotImplementedError(f"backend {backend.name!r} does not implement layer kind(s) "
                                      f"{', '.join(missing)} used by model {self.name!r}. {detail}")

    @property
    def backend(self):
        """The backend running this model (``None`` before first use)."""
        return None if self._program is None else getattr(self._program, "backend", None)

    # -- training API ------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs: int = 1, verbose="auto", callbacks=None,
            validation_split: float = 0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch: int = 0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq: int = 1):
        """Train for ``epochs`` (Keras semantics); returns a ``History``. ``x`` is arrays (with ``y``),
        or a generator, ``PyDataset``, ``torch`` DataLoader, ``tf.data.Dataset`` or iterable of ``(x, y)``
        batches (see :mod:`polykeras.data_sources`)."""
        from polykeras.trainer import Trainer

        _refuse_custom_steps(self, "fit", "train_step", "compute_loss", "compute_metrics",
                             *(("test_step",) if validation_data is not None or validation_split else ()))
        return Trainer(self).fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                                 validation_split=validation_split, validation_data=validation_data,
                                 shuffle=shuffle, initial_epoch=initial_epoch,
                                 validation_batch_size=validation_batch_size, validation_freq=validation_freq,
                                 steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
                                 sample_weight=sample_weight, class_weight=class_weight)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict: bool = False):
        """Loss and metrics in inference mode: a scalar loss, ``[loss, *metrics]``
        or, with ``return_dict``, a dict."""
        from polykeras.trainer import Trainer

        _refuse_custom_steps(self, "evaluate", "test_step", "compute_loss", "compute_metrics")
        return Trainer(self).evaluate(x, y, batch_size=batch_size, verbose=verbose, callbacks=callbacks,
                                      return_dict=return_dict, steps=steps, sample_weight=sample_weight)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None) -> np.ndarray:
        from polykeras.trainer import Trainer

        _refuse_custom_steps(self, "predict", "predict_step")
        return Trainer(self).predict(x, batch_size=batch_size, verbose=verbose, callbacks=callbacks, steps=steps)

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict: bool = False):
        from polykeras.trainer import Trainer

        _refuse_custom_steps(self, "train_on_batch", "train_step", "compute_loss", "compute_metrics")
        return Trainer(self).train_on_batch(x, y, return_dict=return_dict, sample_weight=sample_weight,
                                            class_weight=class_weight)

    def test_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        from polykeras.trainer import Trainer

        _refuse_custom_steps(self, "test_on_batch", "test_step", "compute_loss", "compute_metrics")
        return Trainer(self).test_on_batch(x, y, return_dict=return_dict, sample_weight=sample_weight)

    def predict_on_batch(self, x) -> np.ndarray:
        from polykeras.trainer import Trainer

        _refuse_custom_steps(self, "predict_on_batch", "predict_step")
        return Trainer(self).predict_on_batch(x)

    @property
    def metrics_names(self) -> list[str]:
        if self._compile_config is None:
            return []
        return self._training_spec(None).log_names


def _refuse_custom_steps(model, entry: str, *methods: str) -> None:
    """Refuse a model class that overrides a Keras step method ``entry`` would run (Keras's "customizing
    what happens in fit()"): polykeras runs the core's loop on the backend's compiled program and would
    silently never call it."""
    for name in methods:
        owner = next((c for c in type(model).__mro__ if name in vars(c)), None)
        if owner is not None and not owner.__module__.startswith("polykeras."):
            raise NotImplementedError(
                f"model {model.name!r}: {owner.__name__} overrides {name}(), which {entry}() would not call: "
                f"polykeras runs {entry}() as one backend-agnostic spec (the core's loop on each backend's compiled "
                "step), not a model's own step methods. Express the change through compile() (a loss function or "
                "keras.losses.Loss subclass, metrics, loss_weights), callbacks, or layers written with keras.ops, "
                f"and remove the {name}() override")


def _check_metrics(backend, training: TrainingSpec) -> None:
    """Refuse, before compiling, metrics whose statistics ``backend`` does not sum."""
    summed = [m.name for _, m in training.all_metrics if is_summed(m)]
    if summed and "metric_statistics" not in backend.training_features:
        raise NotImplementedError(
            f"backend {backend.name!r} cannot compute metric(s) {', '.join(summed)}: weighted_metrics entries, "
            "the metrics of an output that carries a Keras mask and stateful metrics (Precision, Recall, AUC, "
            "MeanIoU) need a backend that sums metric statistics "
            "('metric_statistics' in Backend.training_features), such as numpy, torch, jax or the keras backends")


def _trainable_keys(spec) -> list[tuple[str, str]]:
    """``(node, weight name)`` of each trainable weight, in spec order: what optimizer slots follow."""
    return [(layer.name, w.name) for layer, w in spec.weight_specs if w.trainable]


def _follow_trainable(state, keys, spec):
    """The optimizer state of a program built before a ``trainable`` flag changed, for ``spec``'s
    trainable weights: a weight that still trains keeps its slots, one that now trains starts from
    zeros (Keras 3 on torch keeps each variable's slots; on jax it refuses until a recompile --
    which, as the fine-tuning guide does, starts a new optimizer: ``compile`` drops the state)."""
    from polykeras.program import OptimizerState

    new = _trainable_keys(spec)
    if keys is None or keys == new:
        return state
    shapes = {(layer.name, w.name): w.shape for layer, w in spec.weight_specs}
    slots = {}
    for name, arrays in state.slots.items():
        old = dict(zip(keys, arrays))
        slots[name] = [old[k] if k in old else np.zeros(shapes[k], arrays[0].dtype if arrays else float)
                       for k in new]
    return OptimizerState(state.iterations, slots)
