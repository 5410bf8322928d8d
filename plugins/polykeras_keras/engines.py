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

    def train(self, inputs, y) -> None:
        raise NotImplementedError

    def test(self, inputs, y) -> None:
        raise NotImplementedError

    def predict(self, model, inputs) -> np.ndarray:
        self.sync()
        return keras.ops.convert_to_numpy(model(inputs, training=False))

    def value_and_grad(self, model, loss_fn, inputs, y, training: bool, with_input: bool):
        """``(loss, [grad of each trainable variable of model], grad of inputs[0] or None)``;
        nothing (moving statistics included) is updated."""
        raise NotImplementedError

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

    def train(self, inputs, y) -> None:
        model = self.model
        if self.state is None:
            self.build(inputs, y)
            model.make_train_function()
            self.state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                              optimizer_variables=True, metrics_variables=True)
        _, self.state = model.train_function(self.state, iter([(inputs, y)]))

    def test(self, inputs, y) -> None:
        self.sync()
        model = self.model
        self.build(inputs, y)
        model.make_test_function()
        state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True, metrics_variables=True)
        _, (trainable, non_trainable, metrics) = model.test_function(state, iter([(inputs, y)]))
        # The step donated its input buffers: every part goes back, as in Model.evaluate.
        model._jax_state = {"trainable_variables": trainable, "non_trainable_variables": non_trainable,
                            "metrics_variables": metrics}
        model._jax_state_synced = False
        model.jax_state_sync()

    def value_and_grad(self, model, loss_fn, inputs, y, training, with_input):
        import jax

        self.sync()
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        x0, rest = inputs[0], list(inputs[1:])

        def objective(trainable, x0):
            out, _, losses = model.stateless_call(trainable, non_trainable, [x0] + rest if rest else x0,
                                                  training=training, return_losses=True)
            loss = loss_fn(y, out)
            return loss + sum(losses) if losses else loss

        argnums = (0, 1) if with_input else 0
        loss, grads = jax.value_and_grad(objective, argnums=argnums)(trainable, x0)
        weights, d_input = grads if with_input else (grads, None)
        return float(loss), [np.asarray(g) for g in weights], None if d_input is None else np.asarray(d_input)


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

    def train(self, inputs, y) -> None:
        self.build(inputs, y)
        self.model.train_function([(inputs, y)])

    def test(self, inputs, y) -> None:
        self.build(inputs, y)
        self.model.test_function([(inputs, y)])

    def predict(self, model, inputs):
        import torch

        with torch.no_grad():
            return super().predict(model, inputs)

    def value_and_grad(self, model, loss_fn, inputs, y, training, with_input):
        import torch

        saved = [v.numpy() for v in model.non_trainable_variables]
        inputs = list(inputs)
        if with_input:
            inputs[0] = inputs[0].clone().requires_grad_(True)
        out = model(inputs if len(inputs) > 1 else inputs[0], training=training)
        loss = loss_fn(y, out)
        if model.losses:
            loss = loss + sum(model.losses)
        wanted = [v.value for v in model.trainable_variables] + ([inputs[0]] if with_input else [])
        grads = torch.autograd.grad(loss, wanted, allow_unused=True, materialize_grads=True)
        for v, value in zip(model.non_trainable_variables, saved):
            v.assign(value)
        grads = [g.detach().cpu().numpy() for g in grads]
        return float(loss.detach()), grads[:len(grads) - with_input], grads[-1] if with_input else None


class TensorflowEngine(Engine):
    """As ``Model.fit`` does on TensorFlow: Keras's ``train_step`` in a
    ``tf.function`` (XLA-compiled where Keras's ``jit_compile`` says so)."""

    def __init__(self, model):
        import tensorflow as tf

        super().__init__(model)
        jit = bool(model.jit_compile)
        self._train = tf.function(model.train_step, reduce_retracing=True, jit_compile=jit)
        self._test = tf.function(model.test_step, reduce_retracing=True, jit_compile=jit)

    def train(self, inputs, y) -> None:
        self.build(inputs, y)
        self._train((inputs, y))

    def test(self, inputs, y) -> None:
        self.build(inputs, y)
        self._test((inputs, y))

    def value_and_grad(self, model, loss_fn, inputs, y, training, with_input):
        import tensorflow as tf

        saved = [v.numpy() for v in model.non_trainable_variables]
        inputs = list(inputs)
        with tf.GradientTape() as tape:
            if with_input:
                tape.watch(inputs[0])
            out = model(inputs if len(inputs) > 1 else inputs[0], training=training)
            loss = loss_fn(y, out)
            if model.losses:
                loss = loss + tf.add_n(model.losses)
        wanted = [v.value for v in model.trainable_variables] + ([inputs[0]] if with_input else [])
        grads = tape.gradient(loss, wanted, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        for v, value in zip(model.non_trainable_variables, saved):
            v.assign(value)
        grads = [np.asarray(tf.convert_to_tensor(g)) for g in grads]  # Embedding's gradient is IndexedSlices
        return float(loss), grads[:len(grads) - with_input], grads[-1] if with_input else None


class NumpyEngine(Engine):
    """Keras's NumPy backend has no autodiff: it predicts and evaluates, it cannot train."""

    MESSAGE = NUMPY_CANNOT_TRAIN

    def train(self, inputs, y) -> None:
        raise NotImplementedError(self.MESSAGE)

    def test(self, inputs, y) -> None:
        self.build(inputs, y)
        self.model.test_step((inputs, y))

    def value_and_grad(self, *args, **kwargs):
        raise NotImplementedError(self.MESSAGE)


ENGINES = {"jax": JaxEngine, "torch": TorchEngine, "tensorflow": TensorflowEngine, "numpy": NumpyEngine}
