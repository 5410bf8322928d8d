"""A spec's forward pass as one pure JAX function, and the weight bookkeeping
around it.

Weights travel as two lists in canonical (spec) order: the *trainable* ones,
which the loss is differentiated against and the optimizer updates, and the
*frozen* (non-trainable) ones, which only layers assign (BatchNormalization's
moving statistics). :class:`ModelFunction` splits and merges them.

Dropout noise comes from one of three sources, all answering
``mask(layer_index, stream, shape, rate)``:

* :class:`KeyNoise` -- the fast path: drawn inside the jitted step with
  ``jax.random``, from a key made of the step seed;
* :class:`HostMasks` -- parity mode: masks drawn on the host by
  :func:`polykeras.random.dropout_mask` and passed into the step;
* :class:`MaskRecorder` -- notes which masks a forward pass asks for (traced
  once with ``jax.eval_shape``), so parity mode knows what to draw.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from polykeras.random import Normal
from polykeras.spec import ModelSpec
from polykeras_jax.layers import LAYERS, LayerContext


class MaskRequest(NamedTuple):
    layer_index: int
    stream: int
    shape: tuple[int, ...]
    rate: float


def seed_words(step_seed: int) -> np.ndarray:
    """A step seed (up to 64 bits) as the two uint32 words of a threefry key."""
    step_seed = int(step_seed)
    return np.array([(step_seed >> 32) & 0xFFFFFFFF, step_seed & 0xFFFFFFFF], dtype=np.uint32)


class KeyNoise:
    """Masks from ``jax.random``, one independent stream per (layer, stream)."""

    def __init__(self, words, dtype) -> None:
        self.key = jax.random.wrap_key_data(words, impl="threefry2x32")
        self.dtype = dtype

    def mask(self, layer_index: int, stream: int, shape: tuple, rate: float):
        key = jax.random.fold_in(jax.random.fold_in(self.key, layer_index), stream)
        if isinstance(rate, Normal):  # GaussianNoise / GaussianDropout
            return rate.mean + rate.stddev * jax.random.normal(key, shape, self.dtype)
        keep = jax.random.bernoulli(key, 1.0 - rate, shape)
        return keep.astype(self.dtype) * (1.0 / (1.0 - rate))


class HostMasks:
    """Parity-mode masks, passed into the step in the order of ``plan``."""

    def __init__(self, plan: Sequence[MaskRequest], masks: Sequence[Any]) -> None:
        self.masks = {(r.layer_index, r.stream): m for r, m in zip(plan, masks)}

    def mask(self, layer_index: int, stream: int, shape: tuple, rate: float):
        return self.masks[(layer_index, stream)]


class MaskRecorder:
    """Records the masks a forward pass asks for; answers with ones."""

    def __init__(self, dtype) -> None:
        self.requests: list[MaskRequest] = []
        self.dtype = dtype

    def mask(self, layer_index: int, stream: int, shape: tuple, rate: float):
        rate = rate if isinstance(rate, Normal) else float(rate)
        self.requests.append(MaskRequest(layer_index, stream, tuple(int(d) for d in shape), rate))
        return jnp.ones(shape, self.dtype)


class ModelFunction:
    """The forward pass, penalty and weight layout of one spec in one dtype."""

    def __init__(self, spec: ModelSpec, dtype: np.dtype) -> None:
        self.spec = spec
        self.dtype = np.dtype(dtype)
        missing = [layer.kind for layer in spec.layers if layer.kind not in LAYERS]
        if missing:
            raise NotImplementedError(f"the jax backend has no layer kind(s) {', '.join(dict.fromkeys(missing))} "
                                      f"(model {spec.name!r}); it implements {', '.join(sorted(LAYERS))}")
        self.layers = [LAYERS[layer.kind](layer, self.dtype) for layer in spec.layers]
        specs = [w for layer in spec.layers for w in layer.weights]
        self.trainable = [w.trainable for w in specs]
        # flat indices of each layer's weights, in the layer's own order
        self.slices, start = [], 0
        for layer in spec.layers:
            self.slices.append(range(start, start + len(layer.weights)))
            start += len(layer.weights)
        # each node computes with its owner's weights (itself, or a shared layer's first call)
        self.node_slices = [self.slices[owner] for owner in spec.weight_owners]
        self.regularized = [(i, w.regularizer.get("l1", 0.0), w.regularizer.get("l2", 0.0))
                            for i, w in enumerate(specs) if w.regularizer and w.trainable]
        readers = [[k for k, layer in zip(self.layers, spec.layers) if inp.name in layer.inbound]
                   for inp in spec.inputs]
        #: per model input: integer ids (fed to an Embedding), differentiable, Embedding sizes to check
        self.integer_inputs = [np.dtype(inp.dtype).kind in "iu" for inp in spec.inputs]
        self.inputs_differentiable = [not integer and all(k.differentiable_input for k in ks)
                                      for integer, ks in zip(self.integer_inputs, readers)]
        self.embedding_inputs = [[k.input_dim for k in ks if k.kind == "Embedding"] for ks in readers]

    # -- weights -----------------------------------------------------------------------
    def split(self, flat: Sequence[Any]) -> tuple[list, list]:
        """``(trainable, frozen)`` from all weights in spec order."""
        return ([w for w, t in zip(flat, self.trainable) if t], [w for w, t in zip(flat, self.trainable) if not t])

    def merge(self, trainable: Sequence[Any], frozen: Sequence[Any]) -> list:
        """All weights in spec order from the two lists."""
        trainable, frozen = iter(trainable), iter(frozen)
        return [next(trainable) if t else next(frozen) for t in self.trainable]

    def assign(self, frozen: list, assignments: dict[int, Any]) -> list:
        """``frozen`` with the layers' assignments (keyed by flat index) applied."""
        flat_frozen = [i for i, t in enumerate(self.trainable) if not t]
        return [assignments.get(i, w) for i, w in zip(flat_frozen, frozen)]

    # -- math ---------------------------------------------------------------------------
    def forward(self, weights: list, x, training: bool, noise=None) -> tuple[Any, dict[int, Any]]:
        """The output for ``x`` (a tuple of one array per input for several;
        likewise the output) and the assignments to non-trainable weights."""
        return self.forward_with_losses(weights, x, training, noise)[:2]

    def forward_with_losses(self, weights: list, x, training: bool, noise=None) -> tuple[Any, dict[int, Any], Any]:
        """:meth:`forward`, and the sum of the terms layers add to the loss (ActivityRegularization; 0
        without any)."""
        added = jnp.zeros((), self.dtype)
        values = dict(zip((inp.name for inp in self.spec.inputs), x if isinstance(x, tuple) else (x,)))
        assignments: dict[int, Any] = {}
        for index, (spec, layer, where) in enumerate(zip(self.spec.layers, self.layers, self.node_slices)):
            dropout = None if noise is None else (lambda stream, shape, rate, _i=index: noise.mask(_i, stream, shape,
                                                                                                 rate))
            ctx = LayerContext(spec.node_training(training), dropout, None if spec.mask is None else values[spec.mask])
            args = [values[name] for name in spec.inbound]
            values[spec.name] = layer([weights[i] for i in where], args if layer.multiple_inputs else args[0], ctx)
            assignments.update({where[j]: value.astype(self.dtype) for j, value in ctx.assignments.items()})
            for value in ctx.losses:
                added = added + value
        outputs = tuple(values[name] for name in self.spec.outputs)
        return (outputs if len(outputs) > 1 else outputs[0]), assignments, added

    def penalty(self, weights: list):
        """Keras's L1/L2 penalty of the regularised trainable weights (0 without any)."""
        total = jnp.zeros((), self.dtype)
        for i, l1, l2 in self.regularized:
            if l1:
                # |w| as w * sign(w): the same value, and the gradient sign(w) -- 0 at w == 0, as the
                # reference and torch have it (jax.grad(jnp.abs)(0.) is 1; Ftrl's l1 makes exact zeros)
                total = total + l1 * jnp.sum(weights[i] * jnp.sign(weights[i]))
            if l2:
                total = total + l2 * jnp.sum(jnp.square(weights[i]))
        return total

    def mask_plan(self, weights: list, x) -> list[MaskRequest]:
        """The masks a training forward pass on inputs shaped like ``x`` draws,
        found by tracing it abstractly (nothing is computed)."""
        recorder = MaskRecorder(self.dtype)
        jax.eval_shape(lambda w, x: self.forward(w, x, True, recorder)[0], weights,
                       jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x))
        return recorder.requests

    def check_ids(self, x: np.ndarray, position: int = 0) -> None:
        """Embedding ids out of range: a jitted gather cannot raise, so look on the host."""
        for input_dim in self.embedding_inputs[position]:
            if x.size and (x.min() < 0 or x.max() >= input_dim):
                bad = int(x.min()) if x.min() < 0 else int(x.max())
                raise ValueError(f"Embedding: index {bad} is out of range for input_dim={input_dim} (valid ids are "
                                 f"0..{input_dim - 1}); raise input_dim or clip the ids "
                                 "(e.g. imdb.load_data(num_words=...))")
