"""The Keras-style layer: config in ``__init__``, weights in ``build``, no math.

A polykeras layer holds what Keras's does -- its constructor arguments
(returned by :meth:`Layer.get_config`), the shapes and initial values of its
weights (created in :meth:`Layer.build`) -- but not its computation: that is
the backend's, reached through the model spec. Calling a layer on a symbolic
tensor (``Input``) records the graph for functional models; calling it on a
NumPy array runs it eagerly on the selected backend.
"""

from __future__ import annotations

import re
import weakref
from collections import defaultdict
from typing import Any, ClassVar

import numpy as np

from polykeras import backend as _backend
from polykeras import initializers, regularizers
from polykeras.layers.first_call import FirstCall
from polykeras.layers.symbolic import TRACING, SymbolicTensor, attach_mask, format_shape
from polykeras.layers.trainable import TrainableFlag
from polykeras.layers.weight import Weight, named_weight
from polykeras.spec import LayerSpec, Shape, WeightSpec

_name_counts: defaultdict[str, int] = defaultdict(int)


def reset_names() -> None:
    _name_counts.clear()


def unique_name(prefix: str) -> str:
    """Keras's automatic names: ``dense``, ``dense_1``, ``dense_2``, ..."""
    n = _name_counts[prefix]
    _name_counts[prefix] += 1
    return prefix if n == 0 else f"{prefix}_{n}"


def snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()  # Keras: Conv2D -> conv2d


class Layer(FirstCall, TrainableFlag):
    """Base class of every polykeras layer.

    Subclasses define ``__init__`` (config), :meth:`build` (weights, via
    :meth:`add_weight`), :meth:`compute_output_shape` and :meth:`get_config`.
    ``kind`` defaults to the class name, which is the spec's layer kind.
    """

    kind: ClassVar[str] = ""
    #: Input rank(s) the layer accepts, batch included (``None``: any).
    input_ndim: ClassVar[tuple[int, ...] | None] = None
    #: True for layers called on a list of tensors (merge layers): ``build``,
    #: ``compute_output_shape`` and the backends then see a list of shapes/inputs.
    multiple_inputs: ClassVar[bool] = False
    takes_across_batch = False  # True for ops and AddLoss: they may read a value computed across the batch
    #: Keras's ``supports_masking``: an input's mask passes through unchanged; ``reads_mask``: the
    #: layer computes with it (RNNs, GlobalAveragePooling1D). See :mod:`polykeras.layers.masking`.
    supports_masking: ClassVar[bool] = False
    reads_mask: ClassVar[bool] = False

    def __getattr__(self, name: str):  # only for names not found otherwise: a weight, as Keras's layers have
        if hasattr(type(self), name):  # a property that raised AttributeError: its own message, again
            return object.__getattribute__(self, name)
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return named_weight(self, name)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" not in cls.__dict__:
            cls.kind = cls.__name__

    def __init__(self, name: str | None = None, trainable: bool = True, dtype: str | None = None,
                 input_shape: tuple | None = None, batch_input_shape: tuple | None = None,
                 input_dim: int | None = None, **kwargs: Any):
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s): {unknown}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self._trainable = bool(trainable)  # a property (polykeras.layers.trainable): settable after build
        self.dtype = dtype
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        if batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        self._declared_input_shape: Shape | None = None if input_shape is None else _as_shape(input_shape)
        self.built = False
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self._weight_specs: list[WeightSpec] = []
        self._created_trainable: list[bool] = []  # each weight's trainable argument
        self._weight_values: list[np.ndarray] = []
        self._variables: list = []  # a custom layer's add_weight variables
        self._traced_calls: list = []  # a traced layer's calls: (args, kwargs, outputs), in order
        self._model_ref: weakref.ReferenceType | None = None

    # -- building -----------------------------------------------------------
    def add_weight(self, shape=None, initializer=None, dtype=None, trainable: bool = True, regularizer=None,
                   constraint=None, name: str | None = None, **kwargs):
        """Keras's ``add_weight``: a new :class:`~polykeras.layers.variable.Variable`
        of ``shape`` (canonical layout), initialised now, usable in ``call()``."""
        if isinstance(shape, str):
            raise TypeError(f"layer {self.name!r}: add_weight() takes the shape first, as Keras's does; give the "
                            f"name by keyword: add_weight(shape=..., name={shape!r})")
        if constraint is not None:
            raise NotImplementedError(f"layer {self.name!r}: weight constraints are not supported yet")
        unknown = set(kwargs) - {"autocast", "aggregation", "synchronization", "use_resource"}
        if unknown:
            raise TypeError(f"add_weight() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        from polykeras.layers.variable import Variable

        variable = Variable(shape if shape is not None else (), initializer, dtype or self.dtype,
                            trainable, regularizer, name=name or f"variable_{len(self._variables)}", owner=self.name)
        if not self.trainable:
            variable.trainable = False
        self._variables.append(variable)
        return variable

    def _add_weight(self, name: str, shape, initializer="glorot_uniform", regularizer=None,
                    trainable: bool = True) -> int:
        """Create a weight of a built-in layer (canonical layout) and return its index in the layer."""
        shape = tuple(int(d) for d in shape)
        value = initializers.get(initializer)(shape, dtype=self.dtype or _backend.floatx())
        penalty = regularizers.to_spec(regularizers.get(regularizer))
        self._weight_values.append(value)
        return self._record_weight(WeightSpec(name, shape, trainable and self.trainable, penalty), trainable)

    def build(self, input_shape: Shape) -> None:
        """Create the weights for ``input_shape`` (batch dimension ``None``)."""

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def _check_input_shape(self, input_shape: Shape) -> None:
        if self.input_ndim is not None and len(input_shape) not in self.input_ndim:
            ranks = " or ".join(str(r) for r in self.input_ndim)
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}) expects input of rank {ranks} (batch included), "
                f"got shape {format_shape(input_shape)}"
            )

    def build_for(self, input_shape) -> Shape:
        """Check, build (once) and return the output shape for ``input_shape``
        (a list of shapes for a layer with ``multiple_inputs``)."""
        input_shape = [_as_shape(s) for s in input_shape] if self.multiple_inputs else _as_shape(input_shape)
        self._check_input_shape(input_shape)
        if self.built:
            if (self.input_shape is not None and not _compatible(self.input_shape, input_shape)
                    and not self._weights_fit(input_shape)):
                raise ValueError(
                    f"layer {self.name!r} was built for input shape {_format_shapes(self.input_shape)} "
                    f"and cannot be called on shape {_format_shapes(input_shape)}"
                )
        else:
            self.build(input_shape)
            self.built = True
        self.input_shape = input_shape
        self.output_shape = _as_shape(self.compute_output_shape(input_shape))
        return self.output_shape

    def _weights_fit(self, input_shape) -> bool:
        """Whether the weights built for the first call fit a call on ``input_shape`` too, as in
        Keras, where a shared Embedding or LSTM takes sequences of any length: a copy of the
        layer is built for it (the global generator's state restored after its initializers)."""
        from polykeras import random as _random

        state = _random.generator().bit_generator.state
        try:
            probe = type(self).from_config(self.get_config())
            probe.build(input_shape)
        except (ValueError, TypeError):
            return False
        finally:
            _random.generator().bit_generator.state = state
        return [w.shape for w in probe._weight_specs] == [w.shape for w in self._weight_specs]

    # -- calling ------------------------------------------------------------
    def __call__(self, inputs, *args, **kwargs):
        if self._custom_call():
            from polykeras.layers.custom import traced_call

            return self._remember(inputs, traced_call(self, inputs, args, kwargs))
        if len(args) > 1:
            raise TypeError(f"{type(self).__name__} layer {self.name!r} takes its inputs and training=; got "
                            f"{1 + len(args)} positional arguments")
        training = args[0] if args else kwargs.pop("training", None)
        if kwargs:
            raise TypeError(f"{type(self).__name__} layer {self.name!r} got unexpected argument(s) "
                            f"{', '.join(sorted(kwargs))}")
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if TRACING and not all(isinstance(t, SymbolicTensor) for t in tensors):
            # inside a custom layer's call(): arrays (ops.arange(...)) become constant nodes
            from polykeras.layers.operation import constant

            tensors = [t if isinstance(t, SymbolicTensor) else constant(t) for t in tensors]
            inputs = tensors if isinstance(inputs, (list, tuple)) else tensors[0]
        if any(isinstance(t, SymbolicTensor) for t in tensors):
            return self._remember(inputs, self._call_symbolically(tensors, several=isinstance(inputs, (list, tuple))))
        if self.multiple_inputs:
            raise NotImplementedError(f"{type(self).__name__} layer {self.name!r}: eager calls on arrays are not "
                                      "supported for merge layers; use them inside a model")
        return self._call_eagerly(np.asarray(inputs), training=bool(training))

    @classmethod
    def _custom_call(cls) -> bool:
        """Whether this is a custom layer: a subclass that defines ``call()`` (traced into ops)."""
        return callable(getattr(cls, "call", None))

    def _call_symbolically(self, tensors: list[SymbolicTensor], several: bool) -> SymbolicTensor:
        """Record one call (a graph node): check the inputs, build on the first call."""
        bad = [t for t in tensors if not isinstance(t, SymbolicTensor)]
        if bad:
            raise TypeError(f"layer {self.name!r} was called on a mix of symbolic tensors and "
                            f"{type(bad[0]).__name__}; every input must come from Input(...) or a layer call")
        if self.multiple_inputs != several or (not several and len(tensors) != 1):
            if self.multiple_inputs:
                raise ValueError(f"{type(self).__name__} layer {self.name!r} must be called on a list of tensors, "
                                 f"e.g. {type(self).__name__}()([a, b]); got one tensor")
            raise ValueError(f"{type(self).__name__} layer {self.name!r} takes one input tensor, got a list of "
                             f"{len(tensors)}; combine them first with a merge layer (Concatenate, Add, ...)")
        shapes = [t.shape for t in tensors]
        out_shape = self.build_for(shapes if several else shapes[0])
        out = SymbolicTensor(out_shape, self.output_dtype(tensors[0].dtype if tensors else None), self, tuple(tensors))
        if tensors:  # a layer on constants only (inside a traced call()) has no batch axis either
            out.batched = any(t.batched for t in tensors)
        if any(t.across_batch for t in tensors):  # a value for add_loss (polykeras.layers.added_loss)
            from polykeras.layers.added_loss import check_across_batch

            out.across_batch = check_across_batch(self, tensors)
        attach_mask(self, out, tensors, several)
        return out

    def compute_mask(self, inputs, mask=None):
        """Keras's hook: the output's mask from the input(s) and their mask(s) (symbolic tensors or
        ``None``); by default the mask passes through where the layer ``supports_masking``."""
        return mask if self.supports_masking and not isinstance(mask, list) else None

    def output_dtype(self, input_dtype: str) -> str:
        return self.dtype or _backend.floatx()

    def _call_eagerly(self, x: np.ndarray, training: bool):
        """Run this layer alone on the selected backend (``layer(array)``)."""
        from polykeras.models.model import Model
        from polykeras.layers.input_layer import Input

        if training:
            raise NotImplementedError("eager layer calls run in inference mode only (training=False)")
        inp = Input(shape=x.shape[1:], dtype=str(x.dtype) if x.dtype.kind in "iu" else None)
        if self._custom_call():  # its call() may add losses: they become self.losses
            from polykeras.layers.added_loss import eager_call

            return eager_call(self, inp, x)
        return Model(inp, self(inp)).predict_on_batch(x)

    def add_loss(self, loss) -> None:
        """Keras's ``add_loss`` inside ``call()``: ``loss`` is added to the training (and evaluation) loss
        (see :mod:`polykeras.layers.added_loss`)."""
        from polykeras.layers.added_loss import add_loss

        add_loss(self, loss)

    @property
    def losses(self) -> list[float]:
        """Keras's ``layer.losses``: the values ``call()`` added in the last eager call (``layer(array)``),
        then the penalties of the regularized trainable weights (their current values)."""
        from polykeras.layers.added_loss import regularization_losses

        return list(getattr(self, "_losses", [])) + regularization_losses(self)

    # -- weights ------------------------------------------------------------
    def _sync_from_model(self) -> None:
        model = self._model_ref() if self._model_ref is not None else None
        if model is not None:
            model._pull_weights()

    def _weight_holders(self) -> list["Layer"] | None:
        """A custom layer's variables and nested layers (whose weights are its weights); else ``None``."""
        if not self._custom_call():
            return None
        from polykeras.layers.custom import weight_holders

        return weight_holders(self)

    def get_weights(self) -> list[np.ndarray]:
        """Current weight values, canonical Keras layout, as NumPy copies."""
        holders = self._weight_holders()
        if holders is not None:
            return [w for h in holders for w in h.get_weights()]
        self._sync_from_model()
        return [w.copy() for w in self._weight_values]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        holders = self._weight_holders()
        if holders is not None:
            counts = [len(h.get_weights()) for h in holders]
            if len(weights) != sum(counts):
                raise ValueError(f"layer {self.name!r} has {sum(counts)} weight(s), got a list of {len(weights)}")
            start = 0
            for holder, n in zip(holders, counts):
                holder.set_weights(weights[start:start + n])
                start += n
            return
        if len(weights) != len(self._weight_specs):
            raise ValueError(
                f"layer {self.name!r} has {len(self._weight_specs)} weight(s) "
                f"({', '.join(w.name for w in self._weight_specs) or 'none'}), got a list of {len(weights)}"
            )
        self._sync_from_model()
        for i, (spec, value) in enumerate(zip(self._weight_specs, weights)):
            value = np.asarray(value)
            if value.shape != spec.shape:
                raise ValueError(
                    f"weight {self.name}/{spec.name} has shape {spec.shape}, got an array of shape {value.shape}"
                )
            self._weight_values[i] = value.astype(self._weight_values[i].dtype, copy=True)
        model = self._model_ref() if self._model_ref is not None else None
        if model is not None:
            model._push_weights()

    @property
    def weights(self) -> list:
        holders = self._weight_holders()
        if holders is not None:  # a custom layer: its Variables, then its nested layers' weights
            return [w for h in holders for w in (h.weights if getattr(h, "kind", None) != "Variable" else [h])]
        return [Weight(self, i) for i in range(len(self._weight_specs))]

    @property
    def trainable_weights(self) -> list[Weight]:
        return [w for w in self.weights if w.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self) -> list[Weight]:
        return [w for w in self.weights if not w.trainable] if self.trainable else self.weights

    def count_params(self) -> int:
        holders = self._weight_holders()
        if holders is not None:
            return sum(h.count_params() for h in holders)
        return int(sum(np.prod(w.shape, dtype=np.int64) for w in self._weight_specs))

    # -- config -------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._declared_input_shape is not None:
            config["batch_input_shape"] = (None,) + tuple(self._declared_input_shape)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Layer":
        return cls(**config)

    def to_spec(self, name: str, inbound: tuple[str, ...], input_shapes: tuple[Shape, ...], output_shape: Shape,
                weights_of: str | None = None, mask: str | None = None) -> LayerSpec:
        """One call of this layer (graph node ``name``) as plain spec data: the
        config minus what the math does not need -- initializers (initial
        values travel as weights) and regularizers (they sit on the
        ``WeightSpec`` they penalise). A later call of a shared layer
        (``weights_of`` set) carries no weights of its own."""
        config = {k: v for k, v in self.get_config().items()
                  if k not in ("name", "trainable", "dtype", "batch_input_shape")
                  and not k.endswith(("_initializer", "_regularizer", "_constraint"))}
        return LayerSpec(
            name=name, kind=self.kind, config=config, inbound=inbound, input_shapes=input_shapes,
            output_shape=output_shape, weights=() if weights_of else tuple(self._weight_specs), weights_of=weights_of,
            mask=mask, training=False if self._inference_only else None,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


def _as_shape(shape) -> Shape:
    if isinstance(shape, int):
        shape = (shape,)
    return tuple(None if d is None else int(d) for d in shape)


def _compatible(a, b) -> bool:
    """Shapes (or lists of shapes) that agree wherever both are known."""
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(_compatible(x, y) for x, y in zip(a, b)))
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _format_shapes(shape) -> str:
    return "[" + ", ".join(map(format_shape, shape)) + "]" if isinstance(shape, list) else format_shape(shape)


def serialize_regularizer(reg) -> dict | None:
    if reg is None:
        return None
    return {"class_name": type(reg).__name__, "config": reg.get_config()}
