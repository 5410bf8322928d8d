"""A masked output's loss and metrics are weighted by its mask, as Keras weights them
(polykeras.loss_masks): the reference's rule, every backend trained like it, Keras 3 itself, and
what is refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from backend_parity import check_fit_matches_reference

import polykeras as keras
from polykeras import layers

#: float64 trajectories of torch and jax against the reference (as the other masked-model tests)
FLOAT64_PARITY = 1e-12


def _ids(n=12, steps=6, seed=0):
    """Token ids padded with 0 at the end, at the start, inside, and one row all padding."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 9, size=(n, steps))
    ids[0, 4:] = 0
    ids[1, :3] = 0
    ids[2, 2:4] = 0
    ids[3, :] = 0
    return ids


def _targets(ids, seed=1):
    """Per-step classes; on padded steps an arbitrary class, which a masked loss must ignore."""
    return np.random.default_rng(seed).integers(0, 4, size=ids.shape)


def _tagger(kind="LSTM", steps=6):
    """A sequence tagger: its output (batch, steps, 4) carries the Embedding's mask."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((steps,), dtype="int32")
    h = layers.Embedding(9, 5, mask_zero=True)(inp)
    h = getattr(layers, kind)(4, return_sequences=True)(h)
    return keras.Model(inp, layers.Dense(4, activation="softmax")(h))


def _per_step_loss(model, ids, y):
    p = model.predict(ids, verbose=0)
    return -np.log(np.take_along_axis(p, y[..., None], axis=-1)[..., 0])


def test_the_loss_is_the_mean_over_the_valid_steps():
    ids, y = _ids(), _targets(_ids())
    model = _tagger()
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy", dtype="float64")
    per, valid = _per_step_loss(model, ids, y), ids != 0
    masked, unmasked = per[valid].mean(), per.mean()
    assert abs(masked - unmasked) > 1e-4 * masked  # the data tells the two rules apart
    assert model.evaluate(ids, y, batch_size=len(ids), verbose=0) == pytest.approx(masked, rel=1e-14)


def test_sample_weights_multiply_the_mask_as_in_keras():
    """Keras: ``w = sample_weight * where(mask, total / valid, 0)``, loss ``sum(w * loss) / total``."""
    ids, y = _ids(), _targets(_ids())
    sw = np.linspace(0.5, 2.0, len(ids))
    model = _tagger()
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy", dtype="float64")
    per, valid = _per_step_loss(model, ids, y), ids != 0
    expected = (per * sw[:, None] * valid).sum() / valid.sum()
    got = model.evaluate(ids, y, batch_size=len(ids), verbose=0, sample_weight=sw)
    assert got == pytest.approx(expected, rel=1e-14)


def test_a_batch_of_padding_only_adds_nothing():
    model = _tagger()
    model.compile("sgd", "sparse_categorical_crossentropy", backend="numpy", dtype="float64")
    before = model.get_weights()
    model.fit(np.zeros((4, 6), int), np.ones((4, 6), int), epochs=1, batch_size=4, verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_backends_train_masked_losses_like_the_reference(backend, kind):
    ids = _ids()
    check_fit_matches_reference(lambda: _tagger(kind), backend, ids, _targets(ids), "sparse_categorical_crossentropy",
                                FLOAT64_PARITY, epochs=2, batch_size=4)


def test_several_steps_per_execution_weight_each_step_by_its_own_mask():
    ids, y = _ids(), _targets(_ids())
    results = []
    for steps in (1, 3):
        model = _tagger()
        model.compile("adam", "sparse_categorical_crossentropy", backend="jax", dtype="float64",
                      steps_per_execution=steps)
        results.append(model.fit(ids, y, epochs=1, batch_size=4, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(results[1], results[0], rtol=FLOAT64_PARITY)


def test_only_the_masked_output_of_two_is_weighted_by_its_mask():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), dtype="int32")
    seq = layers.LSTM(3, return_sequences=True)(layers.Embedding(9, 4, mask_zero=True)(inp))
    tags = layers.Dense(4, activation="softmax", name="tags")(seq)
    label = layers.Dense(2, activation="softmax", name="label")(layers.GlobalAveragePooling1D()(seq))
    ids = _ids()
    ids[3, 0] = 5  # an all-padding row would make the masked average 0 / 0, NaN in Keras too
    y = (_targets(ids), np.arange(len(ids)) % 2)

    def build():
        keras.utils.set_random_seed(0)
        return keras.Model.from_config(keras.Model(inp, [tags, label]).get_config())

    model = build()
    model.compile("sgd", ["sparse_categorical_crossentropy"] * 2, backend="numpy", dtype="float64")
    logs = model.evaluate(ids, y, batch_size=len(ids), verbose=0, return_dict=True)
    p_tags, p_label = model.predict(ids, verbose=0)
    per = -np.log(np.take_along_axis(p_tags, y[0][..., None], axis=-1)[..., 0])
    assert logs["tags_loss"] == pytest.approx(per[ids != 0].mean(), rel=1e-14)
    assert logs["label_loss"] == pytest.approx(-np.log(p_label[np.arange(len(ids)), y[1]]).mean(), rel=1e-14)
    results = []
    for name in ("numpy", "torch"):
        model = build()
        model.compile("adam", ["sparse_categorical_crossentropy"] * 2, backend=name, dtype="float64")
        results.append(model.fit(ids, y, epochs=2, batch_size=4, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(results[1], results[0], rtol=FLOAT64_PARITY)


def test_keras_weights_the_loss_by_the_mask_as_polykeras_does():
    """Keras's own train step (the keras-jax backend: Keras masks the loss itself) against the reference.
    Keras's float64 mode keeps float32 pieces (up to ~6e-8 in its losses, tests/test_keras_backend.py), hence
    the bound; measured here 1.9e-10, while the unmasked losses differ from the masked ones by 1.1e-3."""
    ids, y = _ids(), _targets(_ids())
    results = []
    for name in ("numpy", "keras-jax"):
        model = _tagger()
        model.compile("adam", "sparse_categorical_crossentropy", backend=name, dtype="float64")
        results.append(model.fit(ids, y, epochs=3, batch_size=4, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-7)


def test_a_mask_computed_from_a_layer_output_is_refused_with_the_reason():
    inp = keras.Input((6, 2))
    masked = layers.Masking(mask_value=0.0)(layers.Dense(2)(inp))
    model = keras.Model(inp, layers.Dense(1)(layers.LSTM(3, return_sequences=True)(masked)))
    model.compile("sgd", "mse", backend="numpy")
    with pytest.raises(NotImplementedError, match="mask computed from the output of layer 'dense"):
        model.fit(np.ones((4, 6, 2)), np.ones((4, 6, 1)), epochs=1, verbose=0)


# -- metrics --------------------------------------------------------------------------------------
MASKED_METRICS = ["accuracy", "sparse_categorical_crossentropy", keras.metrics.SparseTopKCategoricalAccuracy(k=2)]


def _compile_with_metrics(model, backend, optimizer="sgd"):
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=MASKED_METRICS,
                  weighted_metrics=["accuracy"], backend=backend, dtype="float64")
    return model


def _by_hand(p, y, valid, sw):
    """Keras's masked metrics of outputs ``p``: sums over the valid steps only (the weighted one also
    by ``sw``), divided by the valid steps' count (weight)."""
    correct = (np.argmax(p, -1) == y).astype(float)
    xent = -np.log(np.take_along_axis(p, y[..., None], axis=-1)[..., 0])
    top2 = (np.sum(p > np.take_along_axis(p, y[..., None], axis=-1), axis=-1) < 2).astype(float)
    m, w = valid.astype(float), valid * sw[:, None]
    return {"accuracy": (correct * m).sum() / m.sum(), "sparse_categorical_crossentropy": (xent * m).sum() / m.sum(),
            "sparse_top_k_categorical_accuracy": (top2 * m).sum() / m.sum(),
            "weighted_accuracy": (correct * w).sum() / w.sum()}


def _padded_ids():
    """:func:`_ids` with padding in every batch of 4: 11, 21 and 20 valid steps of 24."""
    ids = _ids()
    ids[5, 3:] = 0
    ids[9, :4] = 0
    return ids


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_metrics_count_only_the_valid_steps_in_fit_and_evaluate(backend):
    """Left, right and inner padding and a row of padding only, batches of 4 with 11, 21 and 20 valid
    steps: a mean of batch means, or of all steps, would differ."""
    ids = _padded_ids()
    y = _targets(ids)
    sw = np.linspace(0.5, 2.0, len(ids))
    valid = ids != 0
    model = _compile_with_metrics(_tagger(), backend)
    want = _by_hand(model.predict(ids, verbose=0), y, valid, sw)
    unmasked = _by_hand(model.predict(ids, verbose=0), y, np.ones_like(valid), sw)
    assert all(abs(want[k] - unmasked[k]) > 1e-4 for k in want)  # the data tells masked from unmasked
    got = model.evaluate(ids, y, batch_size=4, sample_weight=sw, verbose=0, return_dict=True)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-13, abs=1e-15), name
    # fit: each step's metrics from the outputs before its update (the same steps taken one by one)
    seen = []
    stepped = _compile_with_metrics(_tagger(), backend)
    for lo in range(0, len(ids), 4):
        seen.append(stepped.predict(ids[lo:lo + 4], verbose=0))
        stepped.train_on_batch(ids[lo:lo + 4], y[lo:lo + 4], sample_weight=sw[lo:lo + 4])
    want = _by_hand(np.concatenate(seen), y, valid, sw)
    history = model.fit(ids, y, batch_size=4, sample_weight=sw, epochs=1, shuffle=False, verbose=0).history
    for name in want:
        assert history[name][0] == pytest.approx(want[name], rel=1e-13, abs=1e-15), name


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_several_steps_per_execution_mask_each_steps_metrics(backend):
    ids = _padded_ids()
    y = _targets(ids)
    logs = []
    for steps in (1, 3):
        model = _tagger()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=MASKED_METRICS, backend=backend,
                      dtype="float64", steps_per_execution=steps)
        logs.append(model.fit(ids, y, epochs=2, batch_size=4, shuffle=False, verbose=0).history)
    for name in logs[0]:
        np.testing.assert_allclose(logs[1][name], logs[0][name], rtol=FLOAT64_PARITY, err_msg=name)


def test_keras_masks_the_metrics_as_polykeras_does():
    """Keras's own compiled metrics in its own train and test steps (the keras-torch backend: Keras's
    ``Model.fit``/``evaluate`` steps) against the reference, two epochs of Adam with per-step sample
    weights (Keras 3.15 fails on per-sample ones with a masked sequence output: "Incompatible shapes for
    broadcasting: shapes=[(4, 6), (4,)]"; polykeras spreads them over the steps). Keras's float64 mode
    keeps float32 pieces, hence the bound (measured 1.1e-7). Its weighted metrics are checked on
    tensorflow below: on JAX and on torch Keras diverges from its own rule (the next two tests)."""
    ids = _padded_ids()
    y = _targets(ids)
    sw = np.repeat(np.linspace(0.5, 2.0, len(ids))[:, None], ids.shape[1], axis=1)
    logs = []
    for name in ("numpy", "keras-torch"):
        model = _tagger()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=MASKED_METRICS, backend=name, dtype="float64")
        history = model.fit(ids, y, epochs=2, batch_size=4, sample_weight=sw, shuffle=False, verbose=0).history
        logs.append((history, model.evaluate(ids, y, batch_size=4, sample_weight=sw, verbose=0, return_dict=True)))
    (ref_fit, ref_eval), (keras_fit, keras_eval) = logs
    for name in ref_eval:
        np.testing.assert_allclose(keras_fit[name], ref_fit[name], rtol=1e-6, err_msg=name)
        assert keras_eval[name] == pytest.approx(ref_eval[name], rel=1e-6), name


def test_keras_on_jax_leaves_fit_metrics_unmasked():
    """A divergence of Keras 3.15 itself, measured: on JAX its train step takes ``y_pred`` out of
    ``jax.value_and_grad``'s aux, which drops the Keras mask, so ``fit``'s metrics count padded steps
    (its ``evaluate`` and the torch/tensorflow train steps mask them). polykeras masks them on every
    backend, as Keras defines it; the keras-jax backend reports Keras's number."""
    ids = _padded_ids()
    y = _targets(ids)
    model = _tagger()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="keras-jax", dtype="float64")
    correct = np.argmax(model.predict(ids, verbose=0), -1) == y
    fit = model.fit(ids, y, batch_size=len(ids), epochs=1, shuffle=False, verbose=0).history["accuracy"][0]
    assert abs(correct[ids != 0].mean() - correct.mean()) > 1e-3
    assert fit == pytest.approx(correct.mean(), rel=1e-6)  # unmasked: all steps
    evaluated = model.evaluate(ids, y, batch_size=len(ids), verbose=0, return_dict=True)["accuracy"]
    correct = np.argmax(model.predict(ids, verbose=0), -1) == y
    assert evaluated == pytest.approx(correct[ids != 0].mean(), rel=1e-6)  # masked


def _binary_tagger():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), dtype="int32")
    h = layers.GRU(3, return_sequences=True)(layers.Embedding(9, 4, mask_zero=True)(inp))
    return keras.Model(inp, layers.Dense(1, activation="sigmoid")(h))


def test_keras_on_torch_weights_the_metrics_by_the_losss_mask_weights():
    """A divergence of Keras 3.15 itself, measured: on torch its loss's ``apply_mask`` multiplies the
    step's sample weights in place (``sample_weight *= float_mask``, ``total / valid`` included), so the
    ``weighted_metrics`` after it take the loss's weights. polykeras (and Keras on tensorflow and JAX)
    give them ``sample_weight * mask``; the keras-torch backend reports Keras's number."""
    ids = _padded_ids()
    y = _targets(ids)
    sw = np.repeat(np.linspace(0.5, 2.0, len(ids))[:, None], ids.shape[1], axis=1)
    model = _tagger()
    model.compile("sgd", "sparse_categorical_crossentropy", weighted_metrics=["accuracy"], backend="keras-torch",
                  dtype="float64")
    got = model.evaluate(ids, y, batch_size=4, sample_weight=sw, verbose=0, return_dict=True)["accuracy"]
    correct, valid = np.argmax(model.predict(ids, verbose=0), -1) == y, ids != 0
    # each batch's total / valid (batches of 11, 21 and 20 valid steps): the two rules differ
    scale = np.repeat([valid[lo:lo + 4].size / valid[lo:lo + 4].sum() for lo in range(0, len(ids), 4)], 4)[:, None]
    loss_weights, metric_weights = sw * valid * scale, sw * valid
    keras_torch, rule = ((correct * w).sum() / w.sum() for w in (loss_weights, metric_weights))
    assert abs(keras_torch - rule) > 1e-3
    assert got == pytest.approx(keras_torch, rel=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "keras-tensorflow"])
def test_stateful_metrics_ignore_the_mask_and_take_the_plain_sample_weights(backend):
    """Keras masks only its mean metrics: Precision and Recall count the padded steps too, and a weighted
    one takes the sample weights as given (not the loss's mask-scaled ones); a weighted mean metric takes
    ``sample_weight * mask``. Keras on tensorflow (whose tensors its loss cannot change in place)."""
    ids = _ids()
    y = (_targets(ids) % 2)[..., None].astype(float)
    sw = np.repeat(np.linspace(0.5, 2.0, len(ids))[:, None], ids.shape[1], axis=1)  # per step, for Keras
    model = _binary_tagger()
    model.compile("sgd", "binary_crossentropy", metrics=["binary_accuracy", keras.metrics.Recall()],
                  weighted_metrics=[keras.metrics.Precision(), "binary_accuracy"], backend=backend, dtype="float64")
    got = model.evaluate(ids, y, batch_size=4, sample_weight=sw, verbose=0, return_dict=True)
    positive, true = model.predict(ids, verbose=0)[..., 0] > 0.5, y[..., 0] == 1
    w, valid = sw, ids != 0
    tol = 1e-13 if backend == "numpy" else 1e-6
    assert got["precision"] == pytest.approx((w * (positive & true)).sum() / (w * positive).sum(), rel=tol)
    assert got["recall"] == pytest.approx((positive & true).sum() / true.sum(), rel=tol)
    assert got["binary_accuracy"] == pytest.approx((positive == true)[valid].mean(), rel=tol)
    assert abs(got["binary_accuracy"] - (positive == true).mean()) > 1e-3
    want = ((positive == true) * w * valid).sum() / (w * valid).sum()
    assert got["weighted_binary_accuracy"] == pytest.approx(want, rel=tol)


def test_only_the_masked_outputs_metrics_are_masked():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), dtype="int32")
    seq = layers.LSTM(3, return_sequences=True)(layers.Embedding(9, 4, mask_zero=True)(inp))
    tags = layers.Dense(4, activation="softmax", name="tags")(seq)
    label = layers.Dense(2, activation="softmax", name="label")(layers.GlobalAveragePooling1D()(seq))
    ids = _ids()
    ids[3, 0] = 5
    y = (_targets(ids), np.arange(len(ids)) % 2)
    model = keras.Model(inp, [tags, label])
    model.compile("sgd", ["sparse_categorical_crossentropy"] * 2, metrics=["accuracy"], backend="numpy",
                  dtype="float64")
    logs = model.evaluate(ids, y, batch_size=4, verbose=0, return_dict=True)
    p_tags, p_label = model.predict(ids, verbose=0)
    assert logs["tags_accuracy"] == pytest.approx((np.argmax(p_tags, -1) == y[0])[ids != 0].mean(), rel=1e-14)
    assert logs["label_accuracy"] == pytest.approx((np.argmax(p_label, -1) == y[1]).mean(), rel=1e-14)


def test_compile_no_longer_warns_about_masked_metrics():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _tagger().compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")


def test_a_backend_without_metric_weights_is_refused_by_name_for_masked_metrics():
    from types import SimpleNamespace

    from polykeras import loss_masks

    model = _tagger()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    training = model._training_spec(2)
    assert [m.masked for m in training.metrics] == [True]
    older = SimpleNamespace(name="older", dtype="float32", training_features=frozenset({"sample_weight"}))
    with pytest.raises(NotImplementedError, match="backend 'older' lacks metric_weight"):
        loss_masks.wrap(model, older, object(), training)
    assert isinstance(loss_masks.wrap(model, older, object(), model._training_spec(2).__class__(
        training.optimizer, training.loss)), loss_masks.MaskedLossProgram)  # no metrics: the loss alone is fine


def test_the_refusal_names_the_output_as_the_model_does():
    """A part of a call of several outputs (Bidirectional(merge_mode=None)) is named by its model output
    name (``bidirectional_0``), not by the getitem node that splits it off."""
    inp = keras.Input((5, 3))
    h = layers.Masking()(layers.Dense(3)(inp))
    a, b = layers.Bidirectional(layers.LSTM(2, return_sequences=True), merge_mode=None)(h)
    model = keras.Model(inp, [a, b])
    model.compile("sgd", ["mse", "mse"], backend="numpy")
    with pytest.raises(NotImplementedError, match="output 'bidirectional_0' carries a mask computed from"):
        model.fit(np.ones((2, 5, 3)), [np.ones((2, 5, 2))] * 2, verbose=0)
