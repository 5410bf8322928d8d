"""A masked output's loss is weighted by its mask, as Keras weights it (polykeras.loss_masks):
the reference's rule, every backend trained like it, Keras 3 itself, and what is refused."""

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


def test_metrics_on_a_masked_output_warn_that_they_are_not_masked_yet():
    with pytest.warns(UserWarning, match="metrics are not masked yet"):
        _tagger().compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _tagger().compile("sgd", "sparse_categorical_crossentropy", backend="numpy")
