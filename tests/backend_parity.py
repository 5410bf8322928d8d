"""Helpers that compare a backend with the NumPy reference (imported by the
per-backend test files; the conformance suite generalises them).

* :func:`layer_cases` -- small models, one per layer kind and configuration,
  with inputs and targets: the L0 cases; :func:`graph_cases` -- functional
  graphs (several inputs, merge layers, shared layers, nested models).
* :func:`compare_gradients` -- output, loss, weight and input gradients of one
  case on a backend against the reference (``value_and_grad``, parity mode).
* :func:`program_pair` with :func:`parity_mlp` and :data:`OPTIMIZER_CASES` --
  the same model compiled on the reference and on a backend -- and the L1 checks
  built on them, :func:`check_optimizer_steps` and
  :func:`check_batchnorm_and_frozen_layers`.
* :func:`trajectory` -- per-step training losses and final weights of a named
  workload driven through ``Program.train_step`` with fixed step seeds, and
  :func:`compare_trajectories`, which judges a backend's against the
  reference's: the L2 check.

Differences are norm-wise relative: ``|a - b| / |b|`` (Frobenius norms), which
is robust to individual elements near zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers, optimizers, regularizers
from polykeras.trainer import Trainer


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / (scale if scale > 0 else 1.0))


@dataclass(frozen=True)
class LayerCase:
    id: str
    build: Callable[[], keras.Model]
    input_shape: tuple | list  # a list of shapes for a model of several inputs
    loss: str = "mse"
    integer_input: int | None = None  # vocabulary size for Embedding inputs

    def data(self, batch: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        if self.integer_input:
            x = rng.integers(0, self.integer_input, (batch,) + self.input_shape)
        elif isinstance(self.input_shape, list):
            x = [rng.normal(size=(batch,) + shape) for shape in self.input_shape]
        else:
            x = rng.normal(size=(batch,) + self.input_shape)
        model = self.build()
        y = rng.normal(size=(batch,) + tuple(model.output_shape[1:]))
        return x, y


def _single(layer_factory, input_shape, **kwargs):
    def build():
        keras.utils.set_random_seed(123)
        return keras.Sequential([layers.Input(shape=input_shape), layer_factory()])
    return LayerCase(build=build, input_shape=input_shape, **kwargs)


def _adapted(layer, data_shape):
    """``layer`` adapted to seeded data of ``data_shape`` (a Normalization with learned statistics)."""
    layer.adapt(np.random.default_rng(7).normal(1.5, 2.0, size=data_shape))
    return layer


def layer_cases() -> list[LayerCase]:
    """One or more cases per layer kind, covering the configurations backends get wrong."""
    cases = [
        ("dense-relu", lambda: layers.Dense(5, activation="relu"), (7,)),
        ("dense-softmax-nobias", lambda: layers.Dense(4, activation="softmax", use_bias=False), (6,)),
        ("dense-3d-l1l2", lambda: layers.Dense(3, kernel_regularizer=regularizers.l1_l2(0.01, 0.02)), (4, 5)),
        *[(f"activation-{a}", (lambda a=a: layers.Activation(a)), (6,))
          for a in ("sigmoid", "tanh", "elu", "selu", "gelu", "softplus", "swish", "exponential", "hard_sigmoid")],
        ("dropout", lambda: layers.Dropout(0.4), (10,)),
        ("spatialdropout1d", lambda: layers.SpatialDropout1D(0.4), (5, 6)),
        ("spatialdropout2d", lambda: layers.SpatialDropout2D(0.5), (3, 4, 6)),
        ("flatten", lambda: layers.Flatten(), (3, 4, 2)),
        ("reshape", lambda: layers.Reshape((4, -1)), (2, 6)),
        ("conv2d-valid", lambda: layers.Conv2D(3, 3, activation="relu"), (7, 6, 2)),
        ("conv2d-same-stride2", lambda: layers.Conv2D(4, (3, 2), strides=2, padding="same"), (7, 8, 3)),
        ("conv1d-causal", lambda: layers.Conv1D(3, 3, padding="causal"), (9, 2)),
        ("conv1d-same-stride2", lambda: layers.Conv1D(2, 4, strides=2, padding="same"), (9, 3)),
        # keras#22876: Keras on torch placed this output one pixel off before its 2026 fix
        ("conv2dtranspose-same-stride2", lambda: layers.Conv2DTranspose(3, 3, strides=2, padding="same"), (3, 4, 2)),
        ("conv2dtranspose-valid-k2-s3-relu", lambda: layers.Conv2DTranspose(2, (2, 3), strides=(3, 2),
                                                                             activation="relu"), (3, 2, 3)),
        ("conv2dtranspose-same-even-output-padding", lambda: layers.Conv2DTranspose(
            2, (4, 3), strides=(2, 3), padding="same", output_padding=(1, 2)), (2, 3, 2)),
        ("conv1dtranspose-same-stride2", lambda: layers.Conv1DTranspose(3, 4, strides=2, padding="same"), (5, 2)),
        ("conv1dtranspose-dilated", lambda: layers.Conv1DTranspose(2, 3, dilation_rate=2, use_bias=False), (4, 3)),
        ("conv2d-groups3-same-stride2", lambda: layers.Conv2D(6, (3, 2), strides=2, padding="same", groups=3),
         (5, 6, 6)),
        ("conv1d-groups2-causal", lambda: layers.Conv1D(4, 3, padding="causal", groups=2, activation="relu"), (6, 4)),
        ("depthwiseconv2d-same-stride2-m3", lambda: layers.DepthwiseConv2D((3, 2), strides=2, padding="same",
                                                                           depth_multiplier=3), (5, 6, 2)),
        ("depthwiseconv2d-dilated-relu", lambda: layers.DepthwiseConv2D(2, dilation_rate=(2, 1), activation="relu",
                                                                        use_bias=False), (5, 4, 3)),
        ("separableconv2d-same-stride2", lambda: layers.SeparableConv2D(4, 3, strides=2, padding="same",
                                                                        depth_multiplier=2), (6, 5, 3)),
        ("depthwiseconv1d-same-stride2", lambda: layers.DepthwiseConv1D(3, strides=2, padding="same",
                                                                         depth_multiplier=2), (7, 3)),
        ("separableconv1d-dilated", lambda: layers.SeparableConv1D(3, 2, dilation_rate=2, activation="tanh"), (6, 2)),
        ("separableconv2d-valid-l2", lambda: layers.SeparableConv2D(
            3, (2, 3), activation="tanh", depthwise_regularizer=regularizers.l2(0.01),
            pointwise_regularizer=regularizers.l1(0.02)), (4, 5, 2)),
        ("maxpool2d", lambda: layers.MaxPooling2D(), (6, 6, 2)),
        ("maxpool2d-same-stride1", lambda: layers.MaxPooling2D(3, strides=1, padding="same"), (5, 5, 2)),
        ("avgpool2d-same", lambda: layers.AveragePooling2D(3, strides=2, padding="same"), (5, 6, 2)),
        ("maxpool1d", lambda: layers.MaxPooling1D(), (8, 3)),
        ("avgpool1d-same-stride2", lambda: layers.AveragePooling1D(3, strides=2, padding="same"), (8, 3)),
        ("gap2d", lambda: layers.GlobalAveragePooling2D(), (4, 5, 3)),
        ("gap1d", lambda: layers.GlobalAveragePooling1D(), (6, 3)),
        ("gmp2d-keepdims", lambda: layers.GlobalMaxPooling2D(keepdims=True), (4, 5, 3)),
        ("gmp1d", lambda: layers.GlobalMaxPooling1D(), (6, 3)),
        ("zeropad2d-crop2d", lambda: keras.Sequential([layers.ZeroPadding2D(((1, 2), (0, 1))),
                                                       layers.Cropping2D(((0, 1), (2, 0)))]), (3, 4, 2)),
        ("zeropad1d-crop1d", lambda: keras.Sequential([layers.ZeroPadding1D(2), layers.Cropping1D((1, 3))]),
         (4, 3)),
        ("upsampling2d-nearest", lambda: layers.UpSampling2D((2, 3)), (3, 2, 2)),
        ("upsampling2d-bilinear", lambda: layers.UpSampling2D(2, interpolation="bilinear"), (3, 4, 2)),
        ("upsampling1d", lambda: layers.UpSampling1D(3), (4, 2)),
        ("rescaling", lambda: layers.Rescaling([0.5, -2.0, 3.0], offset=0.25), (2, 3)),
        ("repeatvector-permute-identity", lambda: keras.Sequential([layers.RepeatVector(3), layers.Permute((2, 1)),
                                                                    layers.Identity()]), (4,)),
        ("batchnorm", lambda: layers.BatchNormalization(), (5, 3)),
        ("layernorm", lambda: layers.LayerNormalization(), (5, 3)),
        ("layernorm-axes-12-nocenter", lambda: layers.LayerNormalization(axis=[1, 2], center=False), (3, 4, 2)),
        ("layernorm-axis1-rms", lambda: layers.LayerNormalization(axis=1, rms_scaling=True), (4, 3)),
        ("layernorm-axis1-square", lambda: layers.LayerNormalization(axis=1), (3, 3)),
        ("groupnorm", lambda: layers.GroupNormalization(groups=2), (3, 4, 6)),
        ("groupnorm-instance-nocenter", lambda: layers.GroupNormalization(groups=-1, center=False), (5, 3)),
        ("unitnorm-axes", lambda: layers.UnitNormalization(axis=[1, 2]), (3, 4)),
        ("simplernn", lambda: layers.SimpleRNN(4), (5, 3)),
        ("simplernn-seq-backwards", lambda: layers.SimpleRNN(3, return_sequences=True, go_backwards=True), (4, 2)),
        ("lstm", lambda: layers.LSTM(4), (5, 3)),
        ("convlstm2d-seq-dropout", lambda: layers.ConvLSTM2D(3, (3, 2), strides=(2, 1), padding="same",
                                                             return_sequences=True, dropout=0.3,
                                                             recurrent_dropout=0.2), (3, 5, 4, 2)),
        ("convlstm1d-backwards-dilated", lambda: layers.ConvLSTM1D(2, 2, dilation_rate=2, go_backwards=True,
                                                                   activation="relu"), (4, 6, 3)),
        ("lstm-seq-dropout", lambda: layers.LSTM(3, return_sequences=True, dropout=0.3, recurrent_dropout=0.2),
         (4, 2)),
        ("gru", lambda: layers.GRU(4), (5, 3)),
        ("gru-reset-before-backwards", lambda: layers.GRU(3, reset_after=False, go_backwards=True), (4, 2)),
        ("gaussiannoise", lambda: keras.Sequential([layers.Dense(3), layers.GaussianNoise(0.3)]), (4,)),
        ("gaussiandropout", lambda: keras.Sequential([layers.Dense(3), layers.GaussianDropout(0.4)]), (2, 4)),
        ("activityreg", lambda: keras.Sequential([layers.Dense(3, activation="tanh"),
                                                  layers.ActivityRegularization(l1=0.05, l2=0.1)]), (4,)),
        ("normalization-constants", lambda: keras.Sequential([
            layers.Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1e-16]), layers.Dense(2)]), (3,)),
        ("normalization-adapted-axes-invert", lambda: keras.Sequential([
            _adapted(layers.Normalization(axis=(1, 2), invert=True), (5, 3, 2)), layers.Dense(2)]), (3, 2)),
    ]
    out = [_single(factory, shape, id=name) for name, factory, shape in cases]
    out.append(_single(lambda: layers.Embedding(11, 4), (6,), id="embedding", integer_input=11))
    return out


def _graph(build, input_shapes, case_id):
    def seeded():
        keras.utils.set_random_seed(321)
        inputs = [keras.Input(shape) for shape in input_shapes]
        return keras.Model(inputs, build(*inputs))
    return LayerCase(build=seeded, input_shape=list(input_shapes) if len(input_shapes) > 1 else input_shapes[0],
                     id=case_id)


def graph_cases() -> list[LayerCase]:
    """Functional graphs: every merge layer (with broadcasting across ranks), a residual
    block, a shared layer, a nested Sequential, operators, dropout on two branches."""
    def shared(a, b):
        dense = layers.Dense(3, activation="tanh")
        return layers.Concatenate()([dense(a), dense(b)])

    def nested(x):
        inner = keras.Sequential([layers.Dense(4, activation="relu"), layers.Dense(3)])
        return layers.Dense(2)(inner(x) - x)

    def residual(x):
        h = layers.Dense(5, activation="relu")(x)
        return layers.Dense(2)(h + layers.Dense(5, activation="tanh")(h))

    def two_branch_dropout(x):
        h = layers.Dense(6, activation="relu")(x)
        return layers.Concatenate()([layers.Dropout(0.3)(h), layers.Dropout(0.5)(h)])

    def seq2seq_states(encoder_in, decoder_in):  # keras.io's lstm_seq2seq: the encoder's states start the decoder
        _, h, c = layers.LSTM(4, return_state=True)(encoder_in)
        sequence, _, c2 = layers.LSTM(4, return_sequences=True, return_state=True, go_backwards=True)(
            decoder_in, initial_state=[h, c])
        return layers.Concatenate(axis=1)([layers.Dense(2)(sequence), layers.Dense(2)(c2)[:, None, :]])

    def chained_states(x):  # returned states used directly, and a loop path (recurrent dropout) with initial state
        out, h = layers.GRU(3, return_state=True)(x)
        sequence, h2 = layers.SimpleRNN(3, return_sequences=True, return_state=True, dropout=0.2,
                                        recurrent_dropout=0.3)(x, initial_state=[h])
        return layers.Concatenate()([out, h2 * 2.0, layers.Flatten()(sequence)])

    def bidirectional_states(x):  # Keras's order: forward states, then backward states
        out, fh, fc, bh, bc = layers.Bidirectional(layers.LSTM(3, return_state=True, return_sequences=True),
                                                   backward_layer=layers.LSTM(2, return_state=True,
                                                                              return_sequences=True,
                                                                              go_backwards=True))(x)
        return layers.Concatenate()([layers.Flatten()(out), fh, fc * 2.0, bh, bc * 3.0])

    def bidirectional_initial_states(encoder_in, decoder_in):  # Keras's split: first half forward, second backward
        _, *states = layers.Bidirectional(layers.GRU(3, return_state=True))(encoder_in)
        return layers.Bidirectional(layers.GRU(3, return_sequences=True, dropout=0.2, recurrent_dropout=0.3),
                                    merge_mode="ave")(decoder_in, initial_state=states)

    def conv_lstm_states(encoder_in, decoder_in):  # a ConvLSTM encoder's states start a ConvLSTM decoder
        _, h, c = layers.ConvLSTM2D(2, (2, 3), padding="same", return_state=True)(encoder_in)
        sequence, h2, _ = layers.ConvLSTM2D(2, 3, padding="same", return_sequences=True, return_state=True,
                                            go_backwards=True, recurrent_dropout=0.2)(decoder_in, initial_state=[h, c])
        return layers.Concatenate()([layers.Flatten()(sequence), layers.Flatten()(h2) * 2.0])

    cases = [
        ("graph-residual", residual, [(4,)]),
        ("graph-convlstm-states", conv_lstm_states, [(3, 4, 3, 2), (2, 4, 3, 1)]),
        ("graph-bidirectional-states", bidirectional_states, [(4, 3)]),
        ("graph-bidirectional-initial-states", bidirectional_initial_states, [(4, 3), (5, 2)]),
        ("graph-lstm-seq2seq-states", seq2seq_states, [(5, 3), (4, 2)]),
        ("graph-gru-simplernn-states", chained_states, [(4, 3)]),
        ("graph-shared-dense", shared, [(4,), (4,)]),
        ("graph-nested-sequential", nested, [(3,)]),
        ("graph-operators", lambda a, b: (a + b) * a - b, [(3,), (3,)]),
        ("graph-dropout-branches", two_branch_dropout, [(4,)]),
        ("merge-add-broadcast-ranks", lambda a, b, c: layers.Add()([a, b, c]), [(2, 3), (3,), (1, 3)]),
        ("merge-subtract", lambda a, b: layers.Subtract()([a, b]), [(4,), (4,)]),
        ("merge-multiply", lambda a, b, c: layers.Multiply()([a, b, c]), [(3,), (3,), (1,)]),
        ("merge-average", lambda a, b: layers.Average()([a, b]), [(2, 3), (2, 1)]),
        ("merge-maximum", lambda a, b, c: layers.Maximum()([a, b, c]), [(5,), (5,), (5,)]),
        ("merge-minimum", lambda a, b: layers.Minimum()([a, b]), [(2, 3), (3,)]),
        ("merge-concatenate-axis1", lambda a, b: layers.Concatenate(axis=1)([a, b]), [(2, 3), (4, 3)]),
        ("merge-dot-axes-2-2", lambda a, b: layers.Dot(axes=(2, 2))([a, b]), [(3, 4), (2, 4)]),
        ("merge-dot-normalize", lambda a, b: layers.Dot(axes=1, normalize=True)([a, b]), [(5,), (5,)]),
    ]
    return [_graph(build, shapes, case_id) for case_id, build, shapes in cases]


LOSS_CASES = [  # (id, output activation, loss, target kind)
    ("sparse-cce", "softmax", "sparse_categorical_crossentropy", "labels"),
    ("cce", "softmax", "categorical_crossentropy", "onehot"),
    ("cce-logits", None, keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), "onehot"),
    ("bce", "sigmoid", "binary_crossentropy", "binary"),
    ("bce-logits", None, keras.losses.BinaryCrossentropy(from_logits=True), "binary"),
    ("mse", None, "mse", "real"),
    ("mae", None, "mae", "real"),
    ("huber", None, keras.losses.Huber(delta=0.5), "real"),
    ("log-cosh", None, "log_cosh", "real"),
    ("hinge", None, "hinge", "binary"),
    ("squared-hinge", None, "squared_hinge", "binary"),
    ("kld", "softmax", "kld", "distribution"),
    ("poisson", "exponential", "poisson", "counts"),
    ("cosine", None, "cosine_similarity", "real"),
    ("msle", None, "msle", "positive"),
    ("mape", None, "mape", "positive"),
]


def loss_case(case_id: str) -> tuple[LayerCase, np.ndarray]:
    """A Dense(3) model ending in the case's activation, and matching targets."""
    _, activation, loss, target = next(c for c in LOSS_CASES if c[0] == case_id)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 6)
    y = {"labels": labels, "onehot": np.eye(3)[labels], "binary": (rng.random((6, 3)) > 0.5) * 1.0,
         "real": rng.normal(size=(6, 3)), "distribution": np.eye(3)[labels] * 0.7 + 0.1,
         "counts": rng.poisson(2.0, size=(6, 3)) * 1.0, "positive": rng.uniform(0.5, 2.0, size=(6, 3))}[target]
    return _single(lambda: layers.Dense(3, activation=activation), (5,), id=case_id, loss=loss), y


def compile_case(model, loss, backend: str, dtype: str, optimizer="sgd"):
    model.compile(optimizer=optimizer, loss=loss, backend=backend, dtype=dtype, parity=True)
    return model


def compare_gradients(backend: str, case: LayerCase, dtype: str = "float64", training: bool = True,
                      step_seed: int = 3, y=None) -> dict[str, float]:
    """Relative differences of output, loss and gradients (backend vs reference);
    ``y`` overrides the case's random regression targets (see :func:`loss_case`)."""
    results = {}
    x, y_default = case.data(batch=6 if y is not None else 4)
    y = y_default if y is None else y
    runs = {}
    for name in ("numpy", backend):
        model = compile_case(case.build(), case.loss, name, dtype)
        xs, ys = Trainer(model).prepare(x, y)
        program = model._get_program(training=True, y_ndim=ys.ndim)
        runs[name] = (program.predict_step(xs), program.value_and_grad(xs, ys, step_seed, training=training))
    (ref_out, ref), (out, got) = runs["numpy"], runs[backend]
    results["output"] = rel_diff(out, ref_out)
    results["loss"] = rel_diff(got.loss, ref.loss)
    for i, (g, r) in enumerate(zip(got.weights, ref.weights)):
        if r is not None:
            results[f"grad[{i}]"] = rel_diff(g, r)
    ref_inputs, got_inputs = ((ref.inputs, got.inputs) if isinstance(ref.inputs, tuple)
                              else ((ref.inputs,), (got.inputs,)))
    for i, (g, r) in enumerate(zip(got_inputs, ref_inputs)):
        if r is not None:
            results[f"grad[input{i if len(ref_inputs) > 1 else ''}]"] = rel_diff(g, r)
    return results


def trajectory(backend: str, workload_name: str, steps: int, dtype: str = "float64", batch_size: int | None = None,
               seed: int = 0):
    """Per-step losses and final weights of ``steps`` parity-mode updates on
    the workload's first ``steps * batch_size`` training samples."""
    from polykeras import workloads

    workload = workloads.get(workload_name)
    batch_size = batch_size or workload.batch_size
    (x, y), _ = workload.load()
    x, y = x[: steps * batch_size], y[: steps * batch_size]
    keras.utils.set_random_seed(seed)
    model = workload.build()
    workload.compile(model, backend=backend, dtype=dtype, parity=True)
    trainer = Trainer(model)
    x, y = trainer._prepare_x(x), trainer._prepare_y(y, len(x))
    program = model._get_program(training=True, y_ndim=y.ndim)
    losses = []
    for step in range(steps):
        lo = step * batch_size
        program.reset_metrics()
        program.train_step(x[lo:lo + batch_size], y[lo:lo + batch_size], step_seed=1000 + step)
        losses.append(program.results()["loss"])
    return np.array(losses), program.get_weights()


# -- L1: one model on the reference and on a backend -------------------------------------------
def program_pair(backend, build, optimizer, loss, x, y, dtype="float64", metrics=()):
    """The same model (same initial weights) compiled on numpy and on ``backend``,
    parity mode: ``[(model, program, xs, ys)]`` for each, reference first."""
    programs = []
    for name in ("numpy", backend):
        model = build()
        model.compile(optimizer=optimizer(), loss=loss, metrics=list(metrics), backend=name, dtype=dtype,
                      parity=True)
        trainer = Trainer(model)
        xs, ys = trainer._prepare_x(x), trainer._prepare_y(y, len(x))
        programs.append((model, model._get_program(training=True, y_ndim=ys.ndim), xs, ys))
    return programs


def small_model(dropout=0.0):
    """A seeded 10-16-3 softmax MLP with a Dropout layer, for trainer and randomness tests."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([layers.Dense(16, activation="relu", input_dim=10), layers.Dropout(dropout),
                             layers.Dense(3, activation="softmax")])


def small_data(n=100):
    """``n`` seeded float32 samples of 10 features and labels in 0..2, for :func:`small_model`."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 10)).astype("float32"), rng.integers(0, 3, n)


def parity_mlp():
    """A small MLP with a regulariser and dropout, seeded: the optimizer cases' model."""
    keras.utils.set_random_seed(7)
    return keras.Sequential([layers.Input(shape=(6,)),
                             layers.Dense(8, activation="tanh", kernel_regularizer=regularizers.l1_l2(0.01, 0.02)),
                             layers.Dropout(0.3), layers.Dense(3, activation="softmax")])


OPTIMIZER_CASES = {
    "sgd": lambda: optimizers.SGD(0.1),
    "sgd-momentum": lambda: optimizers.SGD(0.1, momentum=0.9),
    "sgd-nesterov-clipnorm": lambda: optimizers.SGD(0.1, momentum=0.8, nesterov=True, clipnorm=0.05),
    "adam": lambda: optimizers.Adam(0.01),
    "adam-amsgrad-clipvalue": lambda: optimizers.Adam(0.01, amsgrad=True, clipvalue=0.01),
    "adamw": lambda: optimizers.AdamW(0.01, weight_decay=0.1),
    "rmsprop": lambda: optimizers.RMSprop(0.01),
    "rmsprop-centered-momentum": lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True, global_clipnorm=0.1),
    "adagrad": lambda: optimizers.Adagrad(0.1),
    "nadam": lambda: optimizers.Nadam(0.01),
    "nadam-decay-clipnorm": lambda: optimizers.Nadam(0.01, beta_1=0.8, epsilon=1e-3, weight_decay=0.1, clipnorm=0.1),
    "adamax": lambda: optimizers.Adamax(0.01),
    "adadelta": lambda: optimizers.Adadelta(1.0, rho=0.9),
    "lion": lambda: optimizers.Lion(0.003, weight_decay=0.1),
    "ftrl": lambda: optimizers.Ftrl(0.1),
    "ftrl-regularized": lambda: optimizers.Ftrl(0.1, learning_rate_power=-0.6, l2_regularization_strength=0.01,
                                                l2_shrinkage_regularization_strength=0.02, beta=0.5),
    # l1 sets weights to exactly 0, where the model's L1 penalty has its kink (see test_jax_backend)
    "ftrl-l1": lambda: optimizers.Ftrl(0.1, l1_regularization_strength=0.001),
}


# float64: 50 steps of a few hundred ops each at unit roundoff 1.1e-16 stay near 1e-12; any formula
# difference shows at 1e-6 or above. float32: rounding (unit roundoff 6e-8 in 784/512-term dots,
# 80 LSTM steps) grows through training by a model-dependent amount. The floor holds where
# training is stable (the reference's own float32 run is 6e-7 from its float64 run on the MLP,
# 9e-8 on the LSTM); on the CNN it is 4e-2 after 50 RMSprop steps (RMSprop's first updates are
# sign-like, g / sqrt(0.1 g^2), so rounding-level gradients flip whole updates), and the limit
# scales with that drift (see compare_trajectories).
TRAJECTORY_TOL = {"float64": 1e-8, "float32": 1e-5}
_reference_runs: dict[tuple, tuple] = {}


def reference_trajectory(workload_name: str, steps: int, dtype: str, batch_size: int | None = None):
    """:func:`trajectory` on the NumPy reference, computed once per test session."""
    key = (workload_name, steps, dtype, batch_size)
    if key not in _reference_runs:
        _reference_runs[key] = trajectory("numpy", workload_name, steps, dtype, batch_size)
    return _reference_runs[key]


def compare_trajectories(backend: str, workload_name: str, steps: int, dtype: str, batch_size: int | None = None):
    """Assert that ``backend`` trains the workload as the reference does, step by step.

    float64 is judged against the float64 reference at ``TRAJECTORY_TOL``. float32 is judged
    as the conformance suite judges it: against the *float64* reference, with the limit raised
    to the suite's drift factor times the float32 reference's own distance from it -- where
    float32 rounding alone moves a run (RMSprop on the CNN flips whole updates on
    rounding-level gradients), any float32 run may move that far.
    """
    from polykeras_conformance import compare, tolerances

    ref, ref_weights = reference_trajectory(workload_name, steps, dtype, batch_size)
    got, got_weights = trajectory(backend, workload_name, steps, dtype, batch_size)
    weights = max(rel_diff(a, b) for a, b in zip(got_weights, ref_weights))
    assert np.isfinite(got).all() and got[-1] < got[0] * 1.5, got
    tolerance, value, drift = TRAJECTORY_TOL[dtype], compare.per_step_rel_diff(got, ref), ""
    if dtype == "float32":
        exact = reference_trajectory(workload_name, steps, "float64", batch_size)[0]
        own = compare.per_step_rel_diff(ref, exact)
        tolerance = max(tolerance, tolerances.limit("L2", "float32", "drift factor").limit * own)
        value = compare.per_step_rel_diff(got, exact)
        drift = f" vs float64 reference; the float32 reference is {own:.1e} from it"
    print(f"{backend} {workload_name} {dtype} {steps} steps: max per-step loss rel diff {value:.2e} "
          f"(tolerance {tolerance:.1e}{drift}), final weights vs reference {weights:.2e}")
    assert value <= tolerance


def check_optimizer_steps(backend: str, name: str, tol: float):
    """Six updates of :func:`parity_mlp` with ``OPTIMIZER_CASES[name]`` on the reference and on
    ``backend`` (the learning rate halved after three), compared; returns the backend's program."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6)), rng.integers(0, 3, 16)
    (ref_model, ref, xs, ys), (model, got, _, _) = program_pair(backend, parity_mlp, OPTIMIZER_CASES[name],
                                                                 "sparse_categorical_crossentropy", x, y,
                                                                 metrics=["accuracy"])
    for step in range(6):
        if step == 3:  # a new learning rate reaches both programs
            ref_model.optimizer.learning_rate = new_lr = ref_model.optimizer.learning_rate / 2
            model.optimizer.learning_rate = new_lr
        for program in (ref, got):
            program.train_step(xs[step % 2 * 8:][:8], ys[step % 2 * 8:][:8], step_seed=step)
    diffs = [rel_diff(a, b) for a, b in zip(got.get_weights(), ref.get_weights())]
    assert max(diffs) <= tol, diffs
    assert got.results() == pytest.approx(ref.results(), rel=1e-12)
    assert got.iterations == ref.iterations == 6
    return got


def check_batchnorm_and_frozen_layers(backend: str, tol: float):
    """BatchNormalization's moving statistics and a frozen Dense through four Adam steps and an
    inference pass, reference vs ``backend``; returns ``(got, xs, ys)`` for backend-specific checks."""
    def build():
        keras.utils.set_random_seed(3)
        frozen = layers.Dense(5, activation="relu")
        frozen.trainable = False
        return keras.Sequential([layers.Input(shape=(4, 3)), frozen, layers.BatchNormalization(momentum=0.9),
                                 layers.Flatten(), layers.Dense(2)])

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 4, 3)), rng.normal(size=(8, 2))
    (_, ref, xs, ys), (_, got, _, _) = program_pair(backend, build, lambda: optimizers.Adam(0.05), "mse", x, y)
    for step in range(4):
        ref.train_step(xs, ys, step)
        got.train_step(xs, ys, step)
    for a, b in zip(got.get_weights(), ref.get_weights()):
        assert rel_diff(a, b) <= tol
    ref.reset_metrics(), got.reset_metrics()
    ref.test_step(xs, ys), got.test_step(xs, ys)  # inference mode: the moving statistics
    assert got.results()["loss"] == pytest.approx(ref.results()["loss"], rel=1e-12)
    np.testing.assert_allclose(got.predict_step(xs), ref.predict_step(xs), rtol=1e-12)
    return got, xs, ys


def check_training_without_trainable_weights(backend: str, tol: float):
    """A model with no trainable weight (``BatchNormalization(center=False, scale=False)`` alone) trains as
    in Keras: ``fit`` steps update only its moving statistics, as the reference does."""
    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([layers.Input(shape=(3,)), layers.BatchNormalization(center=False, scale=False,
                                                                                     momentum=0.5)])

    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 3)) * 2 + 1, rng.normal(size=(8, 3))
    (_, ref, xs, ys), (model, got, _, _) = program_pair(backend, build, lambda: optimizers.SGD(0.1), "mse", x, y)
    assert not any(w.trainable for _, w in model._spec().weight_specs)
    for step in range(3):
        ref.train_step(xs, ys, step)
        got.train_step(xs, ys, step)
    moved = [w for w in ref.get_weights() if not np.allclose(w, 0) and not np.allclose(w, 1)]
    assert moved, "the moving statistics did not move"
    for a, b in zip(got.get_weights(), ref.get_weights()):
        assert rel_diff(a, b) <= tol
    assert got.iterations == ref.iterations == 3


def check_fit_matches_reference(build, backend: str, x, y, loss: str, tol: float, *, optimizer: str = "adam",
                                epochs: int = 3, batch_size: int = 2) -> None:
    """``build()`` trained in float64 parity mode on the reference and on ``backend`` alike (same
    batches, no shuffling): per-epoch losses and final weights within ``tol``."""
    results = []
    for name in ("numpy", backend):
        model = build()
        model.compile(optimizer, loss, backend=name, dtype="float64", parity=True)
        history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=False)
        results.append((history.history["loss"], model.get_weights()))
    (ref_loss, ref_weights), (got_loss, got_weights) = results
    np.testing.assert_allclose(got_loss, ref_loss, rtol=tol)
    for a, b in zip(got_weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
