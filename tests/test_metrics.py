"""Metric objects with config, stateful metrics and ``weighted_metrics``, against the installed
Keras 3 (run in a subprocess on its torch backend, float64, so this process's Keras, if any, is untouched)
and across backends (numpy, torch, jax through ``fit``/``evaluate`` logs, float64)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import polykeras as keras
from polykeras import layers
from polykeras.metrics import statistics
from polykeras.spec import MetricSpec, TrainingSpec
from polykeras_numpy import metrics as reference

KERAS_SCRIPT = r"""
import pickle, sys, json
import numpy as np
import keras
keras.config.set_floatx("float64")
cases, names_models = pickle.load(open(sys.argv[1], "rb"))
out = {}
for case_id, (class_name, config, batches) in cases.items():
    m = getattr(keras.metrics, class_name)(dtype="float64", **config)
    try:
        for y, p, w in batches:
            if class_name in ("Mean", "Sum"):  # update_state(values, sample_weight)
                m.update_state(y, sample_weight=w)
            else:
                m.update_state(y, p, sample_weight=w)
        out[case_id] = float(m.result())
        # the float64 state (result() casts total / count to float32), where no ops.mean took part
        if class_name == "Sum" or (class_name == "Mean" and np.ndim(batches[0][0]) == 1):
            out[case_id + "#float64"] = float(m.total) / float(m.count) if hasattr(m, "count") else float(m.total)
    except Exception as error:
        out[case_id] = repr(error)
names = {}
for key, (metrics, weighted) in names_models.items():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", metrics=metrics, weighted_metrics=weighted)
    names[key] = list(model.evaluate(np.ones((4, 3)), np.array([0, 1, 0, 1]), verbose=0, return_dict=True))
print(json.dumps({"values": out, "names": names}))
"""

RNG = np.random.default_rng(7)
N, C, BATCHES = 60, 4, (16, 16, 16, 12)


def _split(*arrays):
    out, start = [], 0
    for size in BATCHES:
        out.append(tuple(None if a is None else a[start:start + size] for a in arrays))
        start += size
    return out


LABELS = RNG.integers(0, C, N)
ONEHOT = np.eye(C)[LABELS]
SCORES = RNG.dirichlet(np.ones(C), N)
TIED = np.round(SCORES * 4) / 4  # many ties, for top-k
BINARY = (RNG.random((N, 1)) > 0.4).astype(float)
PROB = np.clip(BINARY * 0.3 + RNG.random((N, 1)) * 0.7, 0, 1)
LOGITS = RNG.normal(size=(N, 1)) + BINARY
MULTILABEL = (RNG.random((N, C)) > 0.6).astype(float)
WEIGHTS = RNG.uniform(0.1, 2.0, N)
REAL = RNG.normal(size=(N, 3))
REAL_TARGETS = REAL + RNG.normal(size=(N, 3)) * 0.5
REAL_TARGETS[::7, 0] = 0.0  # MAPE's max(|y|, eps) denominator
POSITIVE = np.exp(RNG.normal(size=(N, 3)) * 0.5)
COUNTS = RNG.poisson(2.0, (N, 3)).astype(float)

# case id -> (Keras class, config, targets, outputs, polykeras object)
CASES = {
    "top_k": ("TopKCategoricalAccuracy", {"k": 2}, ONEHOT, SCORES),
    "top_k_ties": ("TopKCategoricalAccuracy", {"k": 2}, ONEHOT, TIED),
    "sparse_top_k": ("SparseTopKCategoricalAccuracy", {"k": 3}, LABELS, SCORES),
    "sparse_top_k_ties": ("SparseTopKCategoricalAccuracy", {"k": 1}, LABELS, TIED),
    "precision": ("Precision", {}, BINARY, PROB),
    "precision_at_0.3": ("Precision", {"thresholds": 0.3}, BINARY, PROB),
    "precision_top_k": ("Precision", {"top_k": 2}, MULTILABEL, SCORES),
    "precision_class_id": ("Precision", {"class_id": 1, "thresholds": 0.2}, MULTILABEL, SCORES),
    "recall": ("Recall", {}, BINARY, PROB),
    "recall_top_k_class": ("Recall", {"top_k": 3, "class_id": 2}, MULTILABEL, SCORES),
    "auc": ("AUC", {}, BINARY, PROB),
    "auc_pr": ("AUC", {"curve": "PR"}, BINARY, PROB),
    "auc_minoring": ("AUC", {"num_thresholds": 7, "summation_method": "minoring"}, BINARY, PROB),
    "auc_majoring_pr": ("AUC", {"num_thresholds": 13, "curve": "PR", "summation_method": "majoring"}, BINARY, PROB),
    "auc_thresholds": ("AUC", {"thresholds": [0.25, 0.5, 0.8]}, BINARY, PROB),
    "auc_logits": ("AUC", {"from_logits": True}, BINARY, LOGITS),
    "auc_multilabel_flat": ("AUC", {"num_thresholds": 50}, MULTILABEL, SCORES),
    "mean_iou": ("MeanIoU", {"num_classes": C, "sparse_y_pred": False}, LABELS, SCORES),
    "mean_iou_onehot": ("MeanIoU", {"num_classes": C, "sparse_y_true": False, "sparse_y_pred": False}, ONEHOT,
                        SCORES),
    "mean_iou_ids": ("MeanIoU", {"num_classes": C}, LABELS, np.argmax(TIED, -1)),
    "categorical_accuracy": ("CategoricalAccuracy", {}, ONEHOT, SCORES),
    "binary_accuracy": ("BinaryAccuracy", {}, BINARY, PROB),
    "sparse_categorical_crossentropy": ("SparseCategoricalCrossentropy", {}, LABELS, SCORES),
    "mse": ("MeanSquaredError", {}, ONEHOT, SCORES),
    # the metrics that are losses (Keras's MeanMetricWrapper of the loss function), and Keras's other mean metrics
    "binary_accuracy_logits": ("BinaryAccuracy", {"threshold": 0.0}, BINARY, LOGITS),
    "mape": ("MeanAbsolutePercentageError", {}, REAL_TARGETS, REAL),
    "msle": ("MeanSquaredLogarithmicError", {}, POSITIVE - 0.3, REAL),
    "hinge": ("Hinge", {}, BINARY, LOGITS),
    "hinge_signed": ("Hinge", {}, 2 * BINARY - 1, LOGITS),
    "squared_hinge": ("SquaredHinge", {}, MULTILABEL, REAL @ RNG.normal(size=(3, C))),
    "categorical_hinge": ("CategoricalHinge", {}, ONEHOT, SCORES),
    "kl_divergence": ("KLDivergence", {}, RNG.dirichlet(np.ones(C), N), SCORES),
    "poisson": ("Poisson", {}, COUNTS, POSITIVE),
    "logcosh": ("LogCoshError", {}, REAL_TARGETS, REAL),
    "cosine_similarity": ("CosineSimilarity", {}, REAL_TARGETS, REAL),
    "rmse": ("RootMeanSquaredError", {}, REAL_TARGETS, REAL),
    "bce_logits_smoothed": ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, BINARY, LOGITS),
    "cce_smoothed": ("CategoricalCrossentropy", {"label_smoothing": 0.2}, ONEHOT, SCORES),
    "scce_logits": ("SparseCategoricalCrossentropy", {"from_logits": True}, LABELS, np.log(SCORES) + 1.0),
}
#: Compared by hand only: Keras's Mean and Sum (case id -> (class, config, values, None)), and vectors (each element a
#: sample of an elementwise metric)
TRACKER_CASES = {
    "mean": ("Mean", {}, REAL, None),
    "sum": ("Sum", {}, REAL, None),
    "mean_of_vectors": ("Mean", {}, REAL[:, 0], None),
    "rmse_of_vectors": ("RootMeanSquaredError", {}, REAL_TARGETS[:, 0], REAL[:, 0]),
    "binary_accuracy_of_vectors": ("BinaryAccuracy", {}, BINARY[:, 0], PROB[:, 0]),
}


def _expected(keras_reference, key):
    """Keras's value of a case and the tolerance: Mean's and Sum's float64 state, to 1e-12; else its result, to
    float32 rounding: Keras returns results in float32 even with float64 variables (its divide_no_nan, in_top_k
    and IoU casts), and on torch its ops.mean of float64 values is float32-accurate (measured: its per-sample
    MAPE off NumPy's float64 by up to 3e-7 relative). A miscounted sample would move a value by >= 1e-3."""
    values = keras_reference["values"]
    if key + "#float64" in values:
        return values[key + "#float64"], 1e-12
    assert isinstance(values[key], float), values[key]  # Keras's error message otherwise
    return values[key], 1e-6


def _polykeras(case_id, weighted):
    class_name, config, _, _ = CASES[case_id]
    return getattr(keras.metrics, class_name)(**config).to_spec(weighted=weighted)


@pytest.fixture(scope="module")
def keras_reference(tmp_path_factory):
    """Keras 3's values of every case, unweighted and weighted (over the same batches), and its log names."""
    pytest.importorskip("keras")
    cases = {}
    for case_id, (class_name, config, y, p) in {**CASES, **TRACKER_CASES}.items():
        cases[case_id] = (class_name, config, _split(y, p, None))
        cases[case_id + "/weighted"] = (class_name, config, _split(y, p, WEIGHTS))
    names = {key: value for key, value in NAME_CASES.items()}
    path = tmp_path_factory.mktemp("keras") / "cases.pkl"
    path.write_bytes(pickle.dumps((cases, names)))
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    done = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, str(path)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _accumulate(metric: MetricSpec, batches) -> float:
    """The reference's epoch value over ``batches``: summed statistics, or the count-weighted mean."""
    if statistics.is_summed(metric):
        fn = reference.get_statistics(metric)
        return statistics.value(metric, sum(fn(y, p, w) for y, p, w in batches))
    fn = reference.get(metric)
    return sum(fn(y, p) * len(y) for y, p, _ in batches) / sum(len(y) for y, _, _ in batches)


@pytest.mark.parametrize("case_id", list(CASES))
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
def test_reference_matches_keras(keras_reference, case_id, weighted):
    _, _, y, p = CASES[case_id]
    expected, rel = _expected(keras_reference, case_id + ("/weighted" if weighted else ""))
    metric = _polykeras(case_id, weighted)
    got = _accumulate(metric, _split(y, p, WEIGHTS if weighted else None))
    assert got == pytest.approx(expected, rel=rel, abs=1e-9 * (rel > 1e-9)), case_id


@pytest.mark.parametrize("case_id", list(CASES) + list(TRACKER_CASES))
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
def test_metric_objects_used_by_hand_match_keras(keras_reference, case_id, weighted):
    """``update_state`` over the batches, ``result``, ``reset_state`` (a custom loop's use): Keras's value."""
    class_name, config, y, p = {**CASES, **TRACKER_CASES}[case_id]
    expected, rel = _expected(keras_reference, case_id + ("/weighted" if weighted else ""))
    m = getattr(keras.metrics, class_name)(dtype="float64", **config)
    assert float(m.result()) == 0.0  # before any batch, as Keras
    for _ in range(2):  # the second pass after reset_state: the same value
        for yb, pb, wb in _split(y, p, WEIGHTS if weighted else None):
            if p is None:
                m.update_state(yb, sample_weight=wb)
            else:
                m.update_state(yb, pb, sample_weight=wb)
        assert float(m.result()) == pytest.approx(expected, rel=rel, abs=1e-9 * (rel > 1e-9)), case_id
        m.reset_state()


def test_weights_change_the_weighted_value_only():
    """A check that the weighted cases above test something: the weights move each value."""
    for case_id in ("precision", "auc", "mean_iou", "top_k", "categorical_accuracy"):
        _, _, y, p = CASES[case_id]
        plain = _accumulate(_polykeras(case_id, True), _split(y, p, None))
        weighted = _accumulate(_polykeras(case_id, True), _split(y, p, WEIGHTS))
        unweighted_spec = _accumulate(_polykeras(case_id, False), _split(y, p, WEIGHTS))
        assert weighted != pytest.approx(plain, rel=1e-6), case_id
        assert unweighted_spec == pytest.approx(plain, rel=1e-12), case_id


NAME_CASES = {
    "duplicate": (["accuracy"], ["accuracy"]),
    "repeats": (["accuracy", "accuracy", "sparse_categorical_crossentropy"],
                ["accuracy", "sparse_categorical_crossentropy", "accuracy"]),
    "weighted_only": ([], ["accuracy", "sparse_categorical_crossentropy"]),
}


@pytest.mark.parametrize("key", list(NAME_CASES))
def test_log_names_are_keras(keras_reference, key):
    metrics, weighted = NAME_CASES[key]
    m = keras.Sequential([layers.Input((3,)), layers.Dense(2, activation="softmax")])
    m.compile(loss="sparse_categorical_crossentropy", metrics=metrics, weighted_metrics=weighted)
    logs = m.evaluate(np.ones((4, 3)), np.array([0, 1, 0, 1]), verbose=0, return_dict=True)
    # the same names (Keras 3's evaluate dict comes sorted by name; polykeras's in compile order, loss first)
    assert sorted(logs) == sorted(keras_reference["names"][key])
    assert list(logs)[0] == "loss"
    assert m.metrics_names == list(logs)


# -- through fit/evaluate: numpy, torch and jax agree (float64) -----------------------------------
def _installed(names):
    from polykeras.backends import backend_infos

    infos = backend_infos()
    return [n for n in names if n in infos and infos[n].installed]


BACKENDS = _installed(["numpy", "torch", "jax"])


def _classifier(backend):
    keras.utils.set_random_seed(3)
    m = keras.Sequential([layers.Input((5,)), layers.Dense(6, activation="tanh"), layers.Dense(C, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend=backend, dtype="float64",
              metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2),
                       keras.metrics.MeanIoU(C, sparse_y_pred=False)],
              weighted_metrics=["accuracy", "sparse_categorical_crossentropy",
                                keras.metrics.MeanIoU(C, sparse_y_pred=False, name="iou")])
    return m


def _binary(backend):
    keras.utils.set_random_seed(4)
    m = keras.Sequential([layers.Input((5,)), layers.Dense(1)])
    m.compile(optimizer="sgd", loss=keras.losses.BinaryCrossentropy(from_logits=True), backend=backend,
              dtype="float64", metrics=[keras.metrics.AUC(from_logits=True), keras.metrics.AUC(curve="PR",
                                                                                                from_logits=True)],
              weighted_metrics=[keras.metrics.AUC(num_thresholds=31, from_logits=True, name="wauc")])
    return m


def _multilabel(backend):
    keras.utils.set_random_seed(5)
    m = keras.Sequential([layers.Input((5,)), layers.Dense(C, activation="sigmoid")])
    m.compile(optimizer="sgd", loss="binary_crossentropy", backend=backend, dtype="float64",
              metrics=[keras.metrics.Precision(), keras.metrics.Recall(top_k=2),
                       keras.metrics.Precision(class_id=1, thresholds=0.4, name="p1"),
                       keras.metrics.TopKCategoricalAccuracy(k=2)],
              weighted_metrics=[keras.metrics.Recall(), "binary_accuracy", "mse"])
    return m


def _loss_metrics(backend):
    """Keras's mean metrics that are losses, and the thresholded binary accuracy, plain and weighted."""
    keras.utils.set_random_seed(6)
    m = keras.Sequential([layers.Input((5,)), layers.Dense(C, activation="sigmoid")])
    m.compile(optimizer="sgd", loss="binary_crossentropy", backend=backend, dtype="float64",
              metrics=["mape", "msle", keras.metrics.Hinge(), "squared_hinge", keras.metrics.CategoricalHinge(),
                       keras.metrics.KLDivergence(), "poisson", keras.metrics.LogCoshError(),
                       keras.metrics.CosineSimilarity(), keras.metrics.BinaryAccuracy(threshold=0.3),
                       keras.metrics.BinaryCrossentropy(label_smoothing=0.1), "root_mean_squared_error"],
              weighted_metrics=[keras.metrics.KLDivergence(), "cosine_similarity",
                                keras.metrics.BinaryAccuracy(threshold=0.7, name="acc70"),
                                keras.metrics.RootMeanSquaredError(name="wrmse")])
    return m


X = RNG.normal(size=(N, 5))


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs numpy and torch or jax")
@pytest.mark.parametrize("make, y, weights", [(_classifier, LABELS, "sample"), (_classifier, LABELS, "class"),
                                              (_binary, BINARY, "sample"), (_multilabel, MULTILABEL, "sample"),
                                              (_loss_metrics, MULTILABEL, "sample")],
                         ids=["classifier", "class_weight", "binary_auc", "multilabel", "loss_metrics"])
def test_backends_agree_through_fit_and_evaluate(make, y, weights):
    kwargs = ({"sample_weight": WEIGHTS} if weights == "sample" else
              {"class_weight": {0: 0.5, 1: 2.0, 2: 1.0, 3: 3.0}})
    runs = {}
    for backend in BACKENDS:
        m = make(backend)
        history = m.fit(X, y, batch_size=16, epochs=2, verbose=0, shuffle=False, validation_split=0.25, **kwargs)
        evaluated = m.evaluate(X, y, batch_size=7, verbose=0, return_dict=True,
                               sample_weight=WEIGHTS if weights == "sample" else None)
        runs[backend] = ({k: v[-1] for k, v in history.history.items()}, evaluated)
    reference_history, reference_eval = runs["numpy"]
    assert len(reference_eval) == len(m.metrics_names) and list(reference_eval) == m.metrics_names
    for backend, (history, evaluated) in runs.items():
        assert list(history) == list(reference_history) and list(evaluated) == list(reference_eval), backend
        for key in reference_history:
            assert history[key] == pytest.approx(reference_history[key], rel=1e-10, abs=1e-12), (backend, key)
        for key in reference_eval:
            assert evaluated[key] == pytest.approx(reference_eval[key], rel=1e-10, abs=1e-12), (backend, key)


def test_evaluate_matches_the_reference_on_the_whole_data():
    """The logs of an evaluate over several batches are the metric of all the data at once."""
    m = _classifier("numpy")
    logs = m.evaluate(X, LABELS, batch_size=7, verbose=0, return_dict=True, sample_weight=WEIGHTS)
    p = m.predict(X, verbose=0)
    iou = keras.metrics.MeanIoU(C, sparse_y_pred=False)
    whole = statistics.value(iou.to_spec(), reference.get_statistics(iou.to_spec())(LABELS, p, None))
    assert logs["mean_io_u"] == pytest.approx(whole, rel=1e-12)
    weighted = iou.to_spec(weighted=True)
    assert logs["iou"] == pytest.approx(statistics.value(weighted, reference.get_statistics(weighted)(LABELS, p, WEIGHTS)),
                                        rel=1e-12)
    hits = (np.argmax(p, -1) == LABELS).astype(float)
    assert logs["weighted_accuracy"] == pytest.approx(np.dot(hits, WEIGHTS) / WEIGHTS.sum(), rel=1e-12)
    assert logs["accuracy"] == pytest.approx(hits.mean(), rel=1e-12)


# -- multi-output, config, errors ---------------------------------------------------------------------
def test_multi_output_weighted_metrics_are_named_like_keras():
    """Keras's names and order over outputs (all plain metrics, then all weighted ones). The core takes
    sample weights for models of one output only so far, so here the weighted metrics run unweighted."""
    inp = keras.Input((5,))
    a = layers.Dense(C, activation="softmax", name="a")(inp)
    b = layers.Dense(1, activation="sigmoid", name="b")(inp)
    m = keras.Model(inp, {"a": a, "b": b})
    m.compile(optimizer="sgd", loss={"a": "sparse_categorical_crossentropy", "b": "binary_crossentropy"},
              metrics={"a": ["accuracy"], "b": [keras.metrics.AUC()]},
              weighted_metrics={"a": ["accuracy"], "b": ["accuracy", keras.metrics.Precision()]}, dtype="float64")
    logs = m.evaluate(X, {"a": LABELS, "b": BINARY}, batch_size=16, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "a_loss", "b_loss", "a_accuracy", "b_auc", "a_weighted_accuracy", "b_accuracy",
                          "b_precision"]
    assert logs["a_weighted_accuracy"] == pytest.approx(logs["a_accuracy"], rel=1e-14)
    out = m.predict(X, verbose=0)
    positive = (out["b"] > 0.5)[:, 0]
    assert logs["b_accuracy"] == pytest.approx(np.mean(positive == BINARY[:, 0]), rel=1e-12)
    tp, fp = np.sum(positive * BINARY[:, 0]), np.sum(positive * (1 - BINARY[:, 0]))
    assert logs["b_precision"] == pytest.approx(tp / (tp + fp), rel=1e-12)


def test_metric_objects_carry_config_through_the_spec_and_saving(tmp_path):
    m = keras.Sequential([layers.Input((5,)), layers.Dense(C, activation="softmax")])
    m.compile(loss="sparse_categorical_crossentropy", metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=3)],
              weighted_metrics=[keras.metrics.AUC(num_thresholds=9, curve="PR", name="pr")])
    spec = m._training_spec(1)
    assert spec.metrics == (MetricSpec("sparse_top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
                                       {"k": 3}),
                            MetricSpec("pr", "auc", {"num_thresholds": 9, "curve": "PR",
                                                     "summation_method": "interpolation", "thresholds": None,
                                                     "from_logits": False}, True))
    assert TrainingSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    old = TrainingSpec.from_dict({"optimizer": spec.optimizer, "loss": spec.loss, "metrics": [["acc", "binary_accuracy"]]})
    assert old.metrics == (MetricSpec("acc", "binary_accuracy"),)
    name, kind = old.metrics[0]  # what a backend written for (name, kind) pairs does
    assert (name, kind) == ("acc", "binary_accuracy")
    copy = keras.Sequential([layers.Input((5,)), layers.Dense(C, activation="softmax")])
    copy.compile_from_config(json.loads(json.dumps(m.get_compile_config())))
    assert copy._training_spec(1).metrics == spec.metrics


def test_loss_metrics_log_under_keras_names_and_survive_saving(tmp_path):
    """The names Keras logs (an alias string logs as given, an object under its default name), the values the
    reference computes from the predictions, and the compile config through a ``.keras`` file."""
    m = _loss_metrics("numpy")
    logs = m.evaluate(X, MULTILABEL, verbose=0, return_dict=True, sample_weight=WEIGHTS)
    assert list(logs) == ["loss", "mape", "msle", "hinge", "squared_hinge", "categorical_hinge", "kl_divergence",
                          "poisson", "logcosh", "cosine_similarity", "binary_accuracy", "binary_crossentropy",
                          "root_mean_squared_error", "weighted_kl_divergence", "weighted_cosine_similarity", "acc70",
                          "wrmse"]
    p = m.predict(X, verbose=0)
    yn = MULTILABEL / np.maximum(np.linalg.norm(MULTILABEL, axis=-1, keepdims=True), 1e-12)
    cosine = np.sum(yn * p / np.linalg.norm(p, axis=-1, keepdims=True), axis=-1)
    assert logs["cosine_similarity"] == pytest.approx(cosine.mean(), rel=1e-12)
    assert logs["weighted_cosine_similarity"] == pytest.approx(np.dot(cosine, WEIGHTS) / WEIGHTS.sum(), rel=1e-12)
    assert logs["acc70"] == pytest.approx(np.dot(np.mean(MULTILABEL == (p > 0.7), -1), WEIGHTS) / WEIGHTS.sum(),
                                          rel=1e-12)
    assert logs["binary_accuracy"] == pytest.approx(np.mean(MULTILABEL == (p > 0.3)), rel=1e-12)
    squared = np.mean(np.square(p - MULTILABEL), -1)
    assert logs["root_mean_squared_error"] == pytest.approx(np.sqrt(squared.mean()), rel=1e-12)
    assert logs["wrmse"] == pytest.approx(np.sqrt(np.dot(squared, WEIGHTS) / WEIGHTS.sum()), rel=1e-12)
    path = tmp_path / "m.keras"
    m.save(path)
    loaded = keras.models.load_model(path)
    assert loaded._training_spec(1).metrics == m._training_spec(1).metrics
    assert loaded.evaluate(X, MULTILABEL, verbose=0, return_dict=True, sample_weight=WEIGHTS) == pytest.approx(logs)


def test_a_metric_subclass_runs_by_hand_and_is_refused_by_compile():
    """Keras's ``Metric`` subclass (``add_variable``, its own ``update_state``/``result``): by hand it works;
    compile() says what to use instead of failing inside fit."""
    from polykeras import ops

    class CategoricalTruePositives(keras.metrics.Metric):
        def __init__(self, name="categorical_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            values = ops.cast(ops.cast(y_true, "int32") == ops.cast(ops.argmax(y_pred, axis=1), "int32"), "float32")
            if sample_weight is not None:
                values = ops.multiply(values, ops.cast(sample_weight, "float32"))
            self.true_positives.assign_add(ops.sum(values))

        def result(self):
            return self.true_positives.value

    metric = CategoricalTruePositives()
    metric.update_state(LABELS, SCORES)
    metric.update_state(LABELS, SCORES, sample_weight=WEIGHTS)
    hits = np.argmax(SCORES, -1) == LABELS
    assert float(metric.result()) == pytest.approx(hits.sum() + np.dot(hits, WEIGHTS), rel=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0 and len(metric.variables) == 1
    m = keras.Sequential([layers.Input((5,)), layers.Dense(C, activation="softmax")])
    with pytest.raises(TypeError, match="metrics: metric 'categorical_true_positives'.*by hand only.*fn\\(y_true"):
        m.compile(loss="sparse_categorical_crossentropy", metrics=[metric])


def test_a_metric_used_by_hand_pickles_with_its_state():
    m = keras.metrics.AUC(num_thresholds=7)
    m.update_state(BINARY[:30], PROB[:30])
    copy = pickle.loads(pickle.dumps(m))
    assert copy.result() == m.result()
    for metric in (m, copy):
        metric.update_state(BINARY[30:], PROB[30:])
    assert copy.result() == m.result() != 0.0


def test_mean_tracker_takes_framework_tensors_and_keras_shapes():
    m = keras.metrics.Mean(name="loss")
    assert m.name == "loss" and float(m.result()) == 0.0
    m.update_state(2.0)
    m.update_state(np.array([[1.0, 3.0], [5.0, 7.0]]), sample_weight=np.array([1.0, 0.0]))
    assert float(m.result()) == pytest.approx((2.0 + 2.0) / 2.0)
    torch = pytest.importorskip("torch")
    m.reset_state()
    m.update_state(torch.tensor([1.0, 2.0], requires_grad=True) * 2)
    assert float(m.result()) == pytest.approx(3.0)


@pytest.mark.parametrize("make, option", [
    (lambda: keras.metrics.Precision(thresholds=[0.3, 0.6]), "thresholds"),
    (lambda: keras.metrics.AUC(multi_label=True), "multi_label"),
    (lambda: keras.metrics.AUC(curve="PRGAIN"), "curve"),
    (lambda: keras.metrics.MeanIoU(3, ignore_class=0), "ignore_class"),
    (lambda: keras.metrics.SparseTopKCategoricalAccuracy(from_sorted_ids=True), "from_sorted_ids"),
])
def test_unsupported_options_name_themselves(make, option):
    with pytest.raises(NotImplementedError, match=option):
        make()


def test_bad_values_and_names_are_clear():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        keras.metrics.TopKCategoricalAccuracy(k=0)
    with pytest.raises(ValueError, match="num_thresholds"):
        keras.metrics.AUC(num_thresholds=1)
    m = keras.Sequential([layers.Input((5,)), layers.Dense(2)])
    with pytest.raises(ValueError, match="weighted_metrics: unknown metric 'acuracy'"):
        m.compile(loss="mse", weighted_metrics=["acuracy"])
    with pytest.raises(TypeError, match="weighted_metrics must be a list"):
        m.compile(loss="mse", weighted_metrics="accuracy")


def test_a_backend_without_metric_statistics_refuses_them():
    from polykeras.backends import backend_infos

    if "example" not in backend_infos():
        pytest.skip("the example backend is not installed")
    m = keras.Sequential([layers.Input((5,)), layers.Dense(1, activation="sigmoid")])
    m.compile(loss="binary_crossentropy", optimizer="sgd", metrics=[keras.metrics.AUC()], backend="example")
    with pytest.raises(NotImplementedError, match="cannot compute metric.*auc"):
        m.fit(X, BINARY, epochs=1, verbose=0)
    m.compile(loss="binary_crossentropy", optimizer="sgd", weighted_metrics=["accuracy"], backend="example")
    with pytest.raises(NotImplementedError, match="cannot compute metric.*accuracy"):
        m.fit(X, BINARY, epochs=1, verbose=0)


KERAS_BACKENDS = _installed(["keras-jax", "keras-torch"])


@pytest.mark.skipif(not KERAS_BACKENDS, reason="no keras backend is installed")
@pytest.mark.parametrize("backend", KERAS_BACKENDS)
@pytest.mark.parametrize("make, y", [(_classifier, LABELS), (_binary, BINARY), (_multilabel, MULTILABEL),
                                     (_loss_metrics, MULTILABEL)],
                         ids=["classifier", "binary_auc", "multilabel", "loss_metrics"])
def test_keras_backends_map_metric_objects_and_weighted_metrics(backend, make, y):
    """Keras's own metric objects (with the same config, in ``weighted_metrics`` where polykeras has them)
    give the reference's logs -- to Keras's float32 results (its in_top_k, divide_no_nan, IoU)."""
    logs = {}
    for name in ("numpy", backend):
        m = make(name)
        m.fit(X, y, batch_size=16, epochs=1, verbose=0, shuffle=False, sample_weight=WEIGHTS)
        logs[name] = m.evaluate(X, y, batch_size=16, verbose=0, return_dict=True, sample_weight=WEIGHTS)
    assert list(logs[backend]) == list(logs["numpy"])
    for key, value in logs["numpy"].items():
        assert logs[backend][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("backend", BACKENDS)
def test_steps_per_execution_accumulates_the_same_statistics(backend):
    """N batches per call (jax: one lax.scan; torch: one transfer) sum the same statistics as N calls."""
    logs = []
    for steps in (1, 3):
        m = _multilabel(backend)
        m.compile(optimizer="sgd", loss="binary_crossentropy", backend=backend, dtype="float64",
                  steps_per_execution=steps, metrics=[keras.metrics.AUC(), keras.metrics.Precision(top_k=2)],
                  weighted_metrics=[keras.metrics.Recall(thresholds=0.4), "binary_accuracy"])
        history = m.fit(X, MULTILABEL, batch_size=8, epochs=1, verbose=0, shuffle=False, sample_weight=WEIGHTS)
        logs.append({k: v[-1] for k, v in history.history.items()})
    assert sorted(logs[0]) == ["auc", "binary_accuracy", "loss", "precision", "recall"]
    for key in logs[0]:
        assert logs[1][key] == pytest.approx(logs[0][key], rel=1e-12), key
