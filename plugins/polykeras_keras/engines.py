"""How one Keras backend runs a step: the few lines that differ between
Keras on JAX, PyTorch, TensorFlow and NumPy (imports Keras and that framework).

Each engine drives Keras's *own* step functions (``model.train_step`` /
``test_step``, compiled the way ``Model.fit`` compiles them), so a polykeras
run is a Keras run; only the loop around them is ours. The engines also give
:meth:`Engine.value_and_grad` with the framework's autodiff (``jax.grad``,
``torch.autograd``, ``tf.GradientTape``) over Keras's forward pass, Keras's
loss object and the layers' regularization losses.
"""

from __future__ import annotations

import keras
import numpy as np

from . import NUMPY_CANNOT_TRAIN


class Engine:
    def __init__(self, model):
        self.model = model  # the compiled keras.Model that trains
        self.built = False

    def build(self, inputs, y) -> None:
        """What ``Model.fit`` does before its first step: build the compiled
        loss and metrics and the optimizer from a real batch."""
        if not self.built:
            self.model._symbolic_build(data_batch=(inputs, y))
            self.built = True

    # -- training state ----------------------------------------------------------------
    def sync(self) -> None:
        """Make the Keras variables current (JAX keeps the state outside them while training)."""

    def train(self, inputs, y, sample_weight=None) -> None:
        """One step of Keras's own train step on ``(inputs, y)`` or ``(inputs, y, sample_weight)``."""
        raise NotImplementedError

    def test(self, inputs, y, sample_weight=None) -> None:
        raise NotImplementedError

    def predict(self, model, inputs):
        """The model's output as NumPy: one array, or a list of one per output."""
        self.sync()
        out = model(inputs, training=False)
        if isinstance(out, (list, tuple)):
            return [keras.ops.convert_to_numpy(o) for o in out]
        return keras.ops.convert_to_numpy(out)

    def value_and_grad(self, model, loss_fn, inputs: list, y, training: bool, wanted: list[int]):
        """``(loss, [grad of each trainable variable of model], [grad of inputs[i] for i in wanted])``;
        nothing (moving statistics included) is updated. ``inputs`` is the
        model's flat input list (the data inputs, then any fed masks)."""
        raise NotImplementedError

    @staticmethod
    def call_structure(inputs: list):
        """How the model is called: a lone input alone, several as a list."""
        return inputs if len(inputs) > 1 else inputs[0]

    @staticmethod
    def tensor(array):
        return keras.ops.convert_to_tensor(array)


class JaxEngine(Engine):
    """As ``Model.fit`` does on JAX: the state (variables of the model, the
    optimizer and the metrics) is threaded through the jitted step and written
    back to the Keras variables only when someone looks at them."""

    def __init__(self, model):
        super().__init__(model)
        self.state = None

    def sync(self) -> None:
        if self.state is None:
            return
        trainable, non_trainable, optimizer, metrics = self.state
        self.model._jax_state = {"trainable_variables": trainable, "non_trainable_variables": non_trainable,
                                 "optimizer_variables": optimizer, "metrics_variables": metrics}
        self.model._jax_state_synced = False
        self.model.jax_state_sync()
        self.state = None

    def train(self, inputs, y, sample_weight=None) -> None:
        model = self.model
        if self.state is None:
            self.build(inputs, y)
            model.make_train_function()
            self.state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                              optimizer_variables=True, metrics_variables=True)
        _, self.state = model.train_function(self.state, iter([_placed(_data(inputs, y, sample_weight))]))

    def test(self, inputs, y, sample_weight=None) -> None:
        self.sync()
        model = self.model
        self.build(inputs, y)
        model.make_test_function()
        state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True, metrics_variables=True)
        _, (trainable, non_trainable, metrics) = model.test_function(state, iter([_placed(_data(inputs, y,
                                                                                                sample_weight))]))
        # The step donated its input buffers: every part goes back, as in Model.evaluate.
        model._jax_state = {"trainable_variables": trainable, "non_trainable_variables": non_trainable,
                            "metrics_variables": metrics}
        model._jax_state_synced = False
        model.jax_state_sync()

    def value_and_grad(self, model, loss_fn, inputs, y, training, wanted):
        import jax

        self.sync()
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def objective(trainable, differentiated):
            full = list(inputs)
            for i, x in zip(wanted, differentiated):
                full[i] = x
            out, _, losses = model.stateless_call(trainable, non_trainable, self.call_structure(full),
                                                  training=training, return_losses=True)
            loss = loss_fn(y, out)
            return loss + sum(losses) if losses else loss

        loss, (weights, d_inputs) = jax.value_and_grad(objective, argnums=(0, 1))(trainable,
                                                                                [inputs[i] for i in wanted])
        return float(loss), [np.asarray(g) for g in weights], [np.asarray(g) for g in d_inputs]


class TorchEngine(Engine):
    """As ``Model.fit`` does on PyTorch: Keras's eager ``train_step``."""

    def __init__(self, model):
        super().__init__(model)
        model.make_train_function()
        model.make_test_function()

    @staticmethod
    def tensor(array):
        import torch

        array = np.asarray(array)
        if not array.flags.writeable:
            array = array.copy()
        return torch.from_numpy(array)

    def train(self, inputs, y, sample_weight=None) -> None:
        self.build(inputs, y)
        self.model.train_function([_data(inputs, y, sample_weight)])

    def test(self, inputs, y, sample_weight=None) -> None:
        self.build(inputs, y)
        self.model.test_function([_data(inputs, y, sample_weight)])

    def predict(self, model, inputs):
        import torch

        with torch.no_grad():
            return super().predict(model, inputs)

    def value_and_grad(self, model, loss_fn, inputs, y, training, wanted):
        import torch

        saved = [v.numpy() for v in model.non_trainable_variables]
        inputs = list(inputs)
        for i in wanted:
            inputs[i] = inputs[i].clone().requires_grad_(True)
        out = model(self.call_structure(inputs), training=training)
        loss = loss_fn(y, out)
        if model.losses:
            loss = loss + sum(model.losses)
        variables = [v.value for v in model.trainable_variables]
        grads = torch.autograd.grad(loss, variables + [inputs[i] for i in wanted], allow_unused=True,
                                    materialize_grads=True)
        for v, value in zip(model.non_trainable_variables, saved):
            v.assign(value)
        grads = [g.detach().cpu().numpy() for g in grads]
        return float(loss.detach()), grads[:len(variables)], grads[len(variables):]


class TensorflowEngine(Engine):
    """As ``Model.fit`` does on TensorFlow: Keras's ``train_step`` in a
    ``tf.function`` (XLA-compiled where Keras's ``jit_compile`` says so).

    A model of several outputs is traced once per batch shape, not (as Keras
    does) once with the batch dimension left unknown: Keras weights each
    output's logged loss by the batch size *known when tracing*
    (``CompileLoss``: ``y_pred.shape[0]``), so under a relaxed trace every
    batch counts once and an uneven last batch skews ``<output>_loss``
    (the total ``loss`` uses the run-time size and is right either way)."""

    def __init__(self, model):
        import tensorflow as tf

        super().__init__(model)
        jit = bool(model.jit_compile)
        relax = len(getattr(model, "outputs", None) or ()) <= 1
        self._train = tf.function(model.train_step, reduce_retracing=relax, jit_compile=jit)
        self._test = tf.function(model.test_step, reduce_retracing=relax, jit_compile=jit)

    def train(self, inputs, y, sample_weight=None) -> None:
        self.build(inputs, y)
        self._train(_data(inputs, y, sample_weight))

    def test(self, inputs, y, sample_weight=None) -> None:
        self.build(inputs, y)
        self._test(_data(inputs, y, sample_weight))

    def value_and_grad(self, model, loss_fn, inputs, y, training, wanted):
        import tensorflow as tf

        saved = [v.numpy() for v in model.non_trainable_variables]
        inputs = list(inputs)
        with tf.GradientTape() as tape:
            for i in wanted:
                tape.watch(inputs[i])
            out = model(self.call_structure(inputs), training=training)
            loss = loss_fn(y, out)
            if model.losses:
                loss = loss + tf.add_n(model.losses)
        variables = [v.value for v in model.trainable_variables]
        grads = tape.gradient(loss, variables + [inputs[i] for i in wanted],
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        for v, value in zip(model.non_trainable_variables, saved):
            v.assign(value)
        grads = [np.asarray(tf.convert_to_tensor(g)) for g in grads]  # Embedding's gradient is IndexedSlices
        return float(loss), grads[:len(variables)], grads[len(variables):]


class NumpyEngine(Engine):
    """Keras's NumPy backend has no autodiff: it predicts and evaluates, it cannot train."""

    MESSAGE = NUMPY_CANNOT_TRAIN

    def train(self, inputs, y, sample_weight=None) -> None:
        raise NotImplementedError(self.MESSAGE)

    def test(self, inputs, y, sample_weight=None) -> None:
        self.build(inputs, y)
        self.model.test_step(_data(inputs, y, sample_weight))

    def value_and_grad(self, *args, **kwargs):
        raise NotImplementedError(self.MESSAGE)


ENGINES = {"jax": JaxEngine, "torch": TorchEngine, "tensorflow": TensorflowEngine, "numpy": NumpyEngine}


def _placed(batch):
    """A batch as Keras's JAX ``fit`` hands it to its step: under a ``keras.distribution``
    (a data-parallel keras-jax program) split along the batch axis over the devices."""
    from keras.src.distribution import distribution_lib

    if distribution_lib.distribution() is None:
        return batch
    from keras.src.backend.jax.trainer import _distribute_data

    return _distribute_data(batch)


def _data(inputs, y, sample_weight):
    """One batch as Keras's train/test steps unpack it."""
    return (inputs, y) if sample_weight is None else (inputs, y, sample_weight)
