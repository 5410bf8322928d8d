"""The cases the suite runs, as plain JSON-able data.

* L0: one layer kind (or loss, or regularizer) in a tiny model, with shapes and
  configs drawn by hypothesis from a fixed seed -- the same cases in every
  process, so a backend's worker and the reference's agree on what to run.
* L1: optimizer configurations, each run for several updates.
* L2: the named workloads of :mod:`polykeras.workloads`.

A case is ``{"id", "layers": [Keras layer configs], "input_shape", "vocab",
"loss", "target", "training"}``; :func:`build_model` turns it into a model.
A graph case has ``"graph": {"inputs": [shapes], "nodes": [...], "outputs":
[...]}`` instead of ``layers``/``input_shape`` (see :func:`build_graph`).

This module holds the case lists and the drawing; the strategies it draws from are in
:mod:`.layer_strategies` and :mod:`.graph_strategies`, and a case's model and data come from
:mod:`.case_models` (re-exported here, with ``Case``).
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, given, settings

from polykeras_conformance.case_models import Case, build_graph, build_model, case_data
from polykeras_conformance.graph_strategies import GRAPH_STRATEGIES
from polykeras_conformance.layer_strategies import ACTIVATIONS, STRATEGIES
from polykeras_conformance.layer_strategies import layer_config as _layer

__all__ = ["ACTIVATIONS", "Case", "EXTRA_CASES", "LOSS_CASES", "METRIC_CASES", "OPTIMIZER_CASES", "build_graph",
           "build_model", "case_data", "graph_cases", "layer_cases"]


def _draw(strategy, n: int) -> list:
    """``n`` derandomised hypothesis draws: the same in every process."""
    drawn: list = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(strategy())
    def collect(example):
        drawn.append(example)

    collect()
    return drawn


def graph_cases(examples_per_group: int = 6) -> list[Case]:
    """L0 graph cases: merge layers on drawn shapes and small functional graphs, training mode."""
    cases: list[Case] = []
    for group, (strategy, share) in GRAPH_STRATEGIES.items():
        seen = set()
        for graph in _draw(strategy, max(2, round(examples_per_group * share))):
            key = repr(graph)
            if key in seen:
                continue
            seen.add(key)
            cases.append({"id": f"{group}#{len(seen)}", "group": group, "graph": graph, "vocab": None,
                          "loss": "mse", "target": "real", "training": True})
    return cases


def layer_cases(examples_per_group: int = 6) -> list[Case]:
    """L0 cases: ``examples_per_group`` hypothesis draws per group, derandomised."""
    cases: list[Case] = []
    for group, strategy in STRATEGIES.items():
        drawn = _draw(strategy, examples_per_group)
        seen = set()
        for example in drawn:
            layers, shape, vocab = (example + (None,))[:3]
            key = repr((layers, shape))
            if key in seen:
                continue
            seen.add(key)
            # BatchNormalization alternates inference and training mode; everything else trains
            # (so that Dropout and recurrent dropout use their parity masks)
            training = group != "BatchNormalization" or len(seen) % 2 == 0
            masked = group.startswith("Masking")  # padded ids, "Masking:Bidirectional" included
            name = f"Masked{layers[1]['class_name']}" if masked else layers[0]["class_name"]
            cases.append({"id": f"{name}#{len(seen)}", "group": group, "layers": layers,
                          "input_shape": list(shape), "vocab": vocab, "loss": "mse", "target": "real",
                          "training": training, **({"padded": True} if masked else {})})
    return cases


LOSS_CASES: list[Case] = [
    {"id": f"loss:{name}", "group": "Loss", "layers": [_layer("Dense", units=3, activation=act)], "input_shape": [5],
     "vocab": None, "loss": loss, "target": target, "training": True}
    for name, act, loss, target in [
        ("sparse_categorical_crossentropy", "softmax", {"class_name": "SparseCategoricalCrossentropy", "config": {}}, "labels"),
        ("categorical_crossentropy", "softmax", {"class_name": "CategoricalCrossentropy", "config": {}}, "onehot"),
        ("categorical_crossentropy(from_logits, label_smoothing)", "linear",
         {"class_name": "CategoricalCrossentropy", "config": {"from_logits": True, "label_smoothing": 0.1}}, "onehot"),
        ("binary_crossentropy", "sigmoid", {"class_name": "BinaryCrossentropy", "config": {}}, "binary"),
        ("binary_crossentropy(from_logits)", "linear",
         {"class_name": "BinaryCrossentropy", "config": {"from_logits": True}}, "binary"),
        ("mean_squared_error", "linear", {"class_name": "MeanSquaredError", "config": {}}, "real"),
        ("mean_absolute_error", "linear", {"class_name": "MeanAbsoluteError", "config": {}}, "real"),
        # errors on both sides of delta; margins 1 - y*p of both signs (0/1 labels made -1/1)
        ("huber(delta=0.5)", "linear", {"class_name": "Huber", "config": {"delta": 0.5}}, "real"),
        ("log_cosh", "linear", {"class_name": "LogCosh", "config": {}}, "real"),
        ("hinge", "linear", {"class_name": "Hinge", "config": {}}, "binary"),
        ("squared_hinge", "linear", {"class_name": "SquaredHinge", "config": {}}, "binary"),
        ("kl_divergence", "softmax", {"class_name": "KLDivergence", "config": {}}, "distribution"),
        ("poisson", "exponential", {"class_name": "Poisson", "config": {}}, "counts"),
        ("cosine_similarity", "linear", {"class_name": "CosineSimilarity", "config": {}}, "real"),
        # linear outputs below zero take the max(p, eps) clip's flat side
        ("mean_squared_logarithmic_error", "linear", {"class_name": "MeanSquaredLogarithmicError", "config": {}},
         "positive"),
        ("mean_absolute_percentage_error", "linear", {"class_name": "MeanAbsolutePercentageError", "config": {}},
         "positive"),
    ]
] + [
    # the other side of the thresholds the cases above stay on: probabilities that do not sum to one
    # (Keras renormalises them), saturated sigmoids (BCE's clip to [eps, 1 - eps] active on some entries),
    # logits in the hundreds (a log-softmax that does not subtract the maximum overflows)
    {"id": f"loss:{name}", "group": "Loss", "layers": [_layer("Dense", units=3, activation=act)], "input_shape": [5],
     "vocab": None, "loss": loss, "target": target, "training": True, "input_scale": scale}
    for name, act, loss, target, scale in [
        ("categorical_crossentropy(sigmoid outputs)", "sigmoid", {"class_name": "CategoricalCrossentropy", "config": {}},
         "onehot", 1.0),
        ("binary_crossentropy(saturated)", "sigmoid", {"class_name": "BinaryCrossentropy", "config": {}}, "binary",
         10.0),
        ("categorical_crossentropy(from_logits, large logits)", "linear",
         {"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}}, "onehot", 2000.0),
    ]
] + [
    {"id": f"regularizer:{name}", "group": "Regularizer", "input_shape": [4], "vocab": None, "loss": "mse",
     "target": "real", "training": True,
     "layers": [_layer("Dense", units=3, kernel_regularizer={"class_name": cls, "config": cfg},
                       bias_regularizer={"class_name": "L2", "config": {"l2": 0.05}})]}
    for name, cls, cfg in [("l1", "L1", {"l1": 0.01}), ("l2", "L2", {"l2": 0.02}),
                           ("l1_l2", "L1L2", {"l1": 0.01, "l2": 0.03})]
]

EXTRA_CASES: list[Case] = [
    # every activation and Flatten at least once, whatever the draws above cover
    *[{"id": f"activation:{name}", "group": "Activation", "layers": [_layer("Activation", activation=name)],
       "input_shape": [7], "vocab": None, "loss": "mse", "target": "real", "training": True}
      for name in ACTIVATIONS],
    {"id": "flatten", "group": "Flatten/Reshape", "layers": [_layer("Flatten")], "input_shape": [3, 2, 2],
     "vocab": None, "loss": "mse", "target": "real", "training": True},
    # logits in the hundreds: a softmax that does not subtract the maximum overflows to inf/NaN
    {"id": "softmax:large-logits", "group": "Activation", "layers": [_layer("Activation", activation="softmax")],
     "input_shape": [6], "vocab": None, "loss": "mse", "target": "real", "training": True, "input_scale": 2000.0},
    # softplus just above where frameworks switch to the identity (torch's F.softplus: 20; the reference's
    # log1p(exp(-x)) + x differs from x by exp(-x), 2e-9 there)
    {"id": "softplus:large-inputs", "group": "Activation", "layers": [_layer("Activation", activation="softplus")],
     "input_shape": [7], "vocab": None, "loss": "mse", "target": "real", "training": True, "input_offset": 21.0},
    # UnitNormalization on both sides of min(rsqrt(sum x^2), 1/eps) (eps = 1e-12): two of the four rows
    # have sum x^2 < 1e-24. Not much smaller: where rsqrt(s)^3 overflows float32 (s < ~2e-26), autodiff's
    # 0 * inf through the min makes float32 gradients NaN in Keras, torch and JAX alike
    {"id": "UnitNormalization:tiny-inputs", "group": "Group/UnitNormalization",
     "layers": [_layer("UnitNormalization", axis=-1)], "input_shape": [3], "vocab": None, "loss": "mse",
     "target": "real", "training": True, "input_scale": 1e-12},
    # 'same' pooling on both sides of the padding conventions: an even window (the extra padding after,
    # asymmetric) and an odd one (symmetric), every kind
    *[{"id": f"{kind}:same-{pool}", "group": "Pooling",
       "layers": [_layer(kind, pool_size=pool, strides=1, padding="same")],
       "input_shape": [5, 2] if kind.endswith("1D") else [3, 4, 2], "vocab": None, "loss": "mse", "target": "real",
       "training": True}
      for kind in ("MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D") for pool in (2, 3)],
    # each recurrent kind on each path: go_backwards with return_sequences (the fused path of the
    # frameworks that have one), recurrent dropout (the loop path), GRU's reset_after=False
    *[{"id": f"{kind}:{name}", "group": "Recurrent", "layers": [_layer(kind, units=3, **config)],
       "input_shape": [4, 2], "vocab": None, "loss": "mse", "target": "real", "training": True}
      for kind in ("SimpleRNN", "LSTM", "GRU")
      for name, config in [("go_backwards", {"go_backwards": True, "return_sequences": True}),
                           ("recurrent_dropout", {"recurrent_dropout": 0.25, "return_sequences": True})]],
    {"id": "GRU:reset_before", "group": "Recurrent", "layers": [_layer("GRU", units=3, reset_after=False)],
     "input_shape": [4, 2], "vocab": None, "loss": "mse", "target": "real", "training": True},
    # Bidirectional: every merge mode on each kind with sequences (the flip back), and a masked LSTM padded
    # left, right and in the middle with its last outputs only
    *[{"id": f"Bidirectional:{kind}-{mode}", "group": "Bidirectional",
       "layers": [_layer("Bidirectional", merge_mode=mode,
                         layer=_layer(kind, units=3, return_sequences=True, dropout=0.2))],
       "input_shape": [4, 2], "vocab": None, "loss": "mse", "target": "real", "training": True}
      for kind, mode in [("SimpleRNN", "concat"), ("LSTM", "sum"), ("GRU", "mul"), ("LSTM", "ave")]],
    {"id": "MaskedBidirectional:LSTM-last", "group": "Masking:Bidirectional", "padded": True,
     "layers": [_layer("Embedding", input_dim=7, output_dim=3, mask_zero=True),
                _layer("Bidirectional", layer=_layer("LSTM", units=3))],
     "input_shape": [5], "vocab": 7, "loss": "mse", "target": "real", "training": True},
    # TimeDistributed over the wrapped kinds the quick draws (Dense first) miss: a strided 'same' Conv2D on each
    # time step, Flatten of each slice, and Dropout with one parity mask per time step
    *[{"id": f"TimeDistributed:{name}", "group": "TimeDistributed", "layers": [_layer("TimeDistributed", layer=layer)],
       "input_shape": shape, "vocab": None, "loss": "mse", "target": "real", "training": True}
      for name, layer, shape in [
          ("Conv2D", _layer("Conv2D", filters=2, kernel_size=(3, 2), strides=2, padding="same", activation="relu"),
           [2, 5, 4, 2]),
          ("Flatten", _layer("Flatten"), [3, 2, 2]),
          ("Dropout", _layer("Dropout", rate=0.4), [3, 4]),
      ]],
    # regimes the quick draws (4 per group) miss, found by the report's configuration coverage: causal and
    # dilated windows (a 'same' padding of 2 rows, symmetric, and of 1 column, after), grouped convolution,
    # statistics over two of three axes (not adjacent), groups between one and the channel count
    *[{"id": f"{layer['class_name']}:{name}", "group": group, "layers": [layer], "input_shape": shape, "vocab": None,
       "loss": "mse", "target": "real", "training": True}  # the id names the kind, as every case's does
      for group, name, layer, shape in [
          ("Conv1D", "causal, dilated", _layer("Conv1D", filters=2, kernel_size=3, padding="causal", dilation_rate=2),
           [6, 2]),
          ("Conv2D", "dilated, same", _layer("Conv2D", filters=2, kernel_size=2, padding="same", dilation_rate=(2, 1)),
           [4, 3, 2]),
          ("Conv2D", "groups=2", _layer("Conv2D", filters=4, kernel_size=2, groups=2), [3, 3, 4]),
          # axis=[1, 3], not [1, 2]: Keras 3 on torch raises for contiguous axes that are not the trailing ones
          # (F.layer_norm wants trailing dims); the draws never hit that, and CI expects keras-torch float32 to pass
          ("LayerNormalization", "two of three axes", _layer("LayerNormalization", axis=[1, 3]), [2, 3, 2]),
          ("Group/UnitNormalization", "groups=2 of 4 channels", _layer("GroupNormalization", groups=2), [3, 4]),
      ]],
    # Keras 3's frozen BatchNormalization (trainable=False): inference mode in a training step (the moving
    # statistics normalise, and stay), its input gradient the affine map's; the Dense before it still trains
    {"id": "BatchNormalization:frozen", "group": "BatchNormalization", "input_shape": [3, 4], "vocab": None,
     "loss": "mse", "target": "real", "training": True, "input_offset": 1.0,
     "layers": [_layer("Dense", units=3), _layer("BatchNormalization", momentum=0.5, trainable=False),
                _layer("Dense", units=2)]},
]

#: metrics on one batch (the values users read in the logs), each with the outputs and targets it is meant for
METRIC_CASES: list[Case] = [
    {"id": f"metric:{name}", "group": "Metric", "layers": [_layer("Dense", units=units, activation=act)],
     "input_shape": [5], "vocab": None, "loss": loss, "target": target, "training": True, "metrics": metrics}
    for name, units, act, loss, target, metrics in [
        ("binary", 3, "sigmoid", "binary_crossentropy", "binary", ["binary_accuracy", "binary_crossentropy"]),
        ("categorical", 6, "softmax", "categorical_crossentropy", "onehot",
         ["categorical_accuracy", "top_k_categorical_accuracy", "categorical_crossentropy", "mean_squared_error"]),
        ("sparse", 6, "softmax", "sparse_categorical_crossentropy", "labels",
         ["sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy", "sparse_categorical_crossentropy"]),
        ("regression", 2, "linear", "mean_squared_error", "real", ["mean_absolute_error", "mean_squared_error"]),
        # relu outputs: exact ties (zeros), which Keras's in_top_k counts as in the top k
        ("sparse(ties)", 6, "relu", {"class_name": "SparseCategoricalCrossentropy", "config": {"from_logits": True}},
         "labels", ["sparse_top_k_categorical_accuracy", "sparse_categorical_accuracy"]),
        # Keras's metrics that are losses (the per-sample loss, averaged), on outputs and targets they are meant for
        ("regression losses", 3, "softplus", "mean_squared_error", "positive",
         ["mape", "msle", "log_cosh_error", "cosine_similarity", "poisson", "root_mean_squared_error"]),
        ("hinges", 3, "tanh", "hinge", "binary", ["hinge", "squared_hinge", "categorical_hinge"]),
        ("distribution", 4, "softmax", "kl_divergence", "distribution", ["kl_divergence", "categorical_hinge"]),
    ]
]

OPTIMIZER_CASES: list[dict] = [
    {"class_name": name, "config": config} for name, config in [
        ("SGD", {"learning_rate": 0.1}), ("SGD", {"learning_rate": 0.05, "momentum": 0.9}),
        ("SGD", {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True}),
        ("Adam", {"learning_rate": 0.01}), ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
        ("Adam", {"learning_rate": 0.01, "epsilon": 1e-3, "beta_1": 0.8}),
        ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1}),
        ("RMSprop", {"learning_rate": 0.01}), ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
        ("Adagrad", {"learning_rate": 0.1}), ("SGD", {"learning_rate": 0.1, "clipnorm": 0.1}),
        ("Adam", {"learning_rate": 0.01, "global_clipnorm": 0.05}), ("RMSprop", {"learning_rate": 0.01, "clipvalue": 0.01}),
        ("Nadam", {"learning_rate": 0.01}), ("Adamax", {"learning_rate": 0.01}),
        ("Adadelta", {"learning_rate": 1.0, "rho": 0.9}), ("Lion", {"learning_rate": 0.003}),
        ("Ftrl", {"learning_rate": 0.1}),
        ("Ftrl", {"learning_rate": 0.1, "learning_rate_power": -0.6, "l1_regularization_strength": 0.001,
                  "l2_regularization_strength": 0.01, "l2_shrinkage_regularization_strength": 0.02, "beta": 0.5}),
        # the clipping thresholds above are exceeded; these are not (clipping must leave the gradients alone)
        ("SGD", {"learning_rate": 0.1, "clipnorm": 10.0}), ("Adam", {"learning_rate": 0.01, "global_clipnorm": 10.0}),
    ]
] + [
    # a learning rate changed between steps (a schedule, ReduceLROnPlateau): momentum conventions that agree
    # while it is constant (torch's v = m*v + g; w -= lr*v) differ from then on
    {"class_name": name, "config": config, "learning_rate_factor": 0.3} for name, config in [
        ("SGD", {"learning_rate": 0.05, "momentum": 0.9}), ("SGD", {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True}),
        ("Adam", {"learning_rate": 0.01})]
] + [
    # Keras's sample weights (each sample's loss times its weight, over the batch size), with a
    # momentum rule so a wrong weighting carries into later steps
    {"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}, "sample_weight": True,
     "group": "SampleWeight"},
]
