"""polykeras.utils: to_categorical, pad_sequences, seeding; eager layer calls."""

import numpy as np
import pytest

import polykeras as keras
from polykeras.preprocessing.sequence import pad_sequences as pad_from_preprocessing
from polykeras.utils import pad_sequences, to_categorical


def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([0, 2, 1], 3), np.eye(3)[[0, 2, 1]])
    assert to_categorical(np.array([[1], [3]])).shape == (2, 4)  # trailing 1 dropped, classes = max + 1
    assert to_categorical([1, 0]).dtype == np.float32
    with pytest.raises(ValueError, match="does not fit num_classes=2"):
        to_categorical([0, 2], 2)
    with pytest.raises(ValueError, match="integer class labels"):
        to_categorical([0.5])


def test_pad_sequences_keras_defaults():
    seqs = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    np.testing.assert_array_equal(pad_sequences(seqs, maxlen=4),
                                  [[0, 1, 2, 3], [0, 0, 0, 4], [6, 7, 8, 9]])  # pre-pad, pre-truncate
    np.testing.assert_array_equal(pad_sequences(seqs, maxlen=2, padding="post", truncating="post", value=-1),
                                  [[1, 2], [4, -1], [5, 6]])
    assert pad_sequences(seqs).shape == (3, 5) and pad_sequences(seqs).dtype == np.int32
    assert pad_from_preprocessing is pad_sequences
    with pytest.raises(ValueError, match="padding must be"):
        pad_sequences(seqs, padding="middle")


def test_set_random_seed_makes_initial_weights_reproducible():
    keras.utils.set_random_seed(7)
    a = keras.layers.Dense(3)
    keras.Sequential([keras.layers.Input(shape=(2,)), a])
    keras.utils.set_random_seed(7)
    b = keras.layers.Dense(3)
    keras.Sequential([keras.layers.Input(shape=(2,)), b])
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])


def test_eager_layer_call_runs_on_the_backend():
    layer = keras.layers.Dense(2, use_bias=False, kernel_initializer="ones")
    out = layer(np.ones((3, 4), dtype="float32"))
    np.testing.assert_array_equal(out, np.full((3, 2), 4.0))
