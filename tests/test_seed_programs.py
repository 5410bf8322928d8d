"""The seed programs: Keras tutorial code, unchanged but for the import, on
real data (``../shared/datasets``), on the backend named by
``POLYKERAS_BACKEND`` (numpy by default; nox runs this file per backend).

To keep the default suite quick the training sets are cut to a few thousand
samples and one or two epochs; the thresholds are far above chance (10% for
digits, 50% for reviews) but below what these runs reach (noted beside each),
so a broken backend fails while a healthy one passes with a wide margin.
"""

import warnings

import numpy as np
import pytest

import polykeras as keras
from polykeras.datasets import DatasetSubsetWarning

pytestmark = pytest.mark.filterwarnings("ignore::polykeras.datasets.DatasetSubsetWarning")


def test_mnist_mlp_784_512_512_10_adam(real_data):
    from polykeras.datasets import mnist
    from polykeras.layers import Dense, Dropout
    from polykeras.models import Sequential

    keras.utils.set_random_seed(1)
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    x_train = x_train.reshape(-1, 784).astype("float32")[:6000] / 255
    x_test = x_test.reshape(-1, 784).astype("float32") / 255
    y_train = keras.utils.to_categorical(y_train[:6000], 10)
    y_test = keras.utils.to_categorical(y_test, 10)

    model = Sequential()
    model.add(Dense(512, activation="relu", input_shape=(784,)))
    model.add(Dropout(0.2))
    model.add(Dense(512, activation="relu"))
    model.add(Dropout(0.2))
    model.add(Dense(10, activation="softmax"))
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(), metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=128, epochs=2, verbose=0, validation_data=(x_test, y_test))
    score = model.evaluate(x_test, y_test, verbose=0)
    assert score[1] > 0.85  # reaches ~0.93
    assert history.history["val_accuracy"][-1] == pytest.approx(score[1])


def test_basic_classification_flatten_dense(real_data):
    keras.utils.set_random_seed(2)
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    x_train, x_test = x_train / 255.0, x_test / 255.0
    model = keras.Sequential([keras.layers.Flatten(input_shape=(28, 28)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train[:8000], y_train[:8000], epochs=1, verbose=0)
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    assert test_acc > 0.85  # reaches ~0.91
    predictions = model.predict(x_test[:10], verbose=0)
    assert predictions.shape == (10, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1, rtol=1e-5)


def test_mnist_cnn_rmsprop(real_data):
    from polykeras import layers
    from polykeras.optimizers import RMSprop

    keras.utils.set_random_seed(3)
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    x_train = x_train[:1500].reshape(-1, 28, 28, 1).astype("float32") / 255
    x_test = x_test[:1000].reshape(-1, 28, 28, 1).astype("float32") / 255
    y_train, y_test = keras.utils.to_categorical(y_train[:1500], 10), keras.utils.to_categorical(y_test[:1000], 10)
    model = keras.Sequential([
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss=keras.losses.categorical_crossentropy, optimizer=RMSprop(), metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0)
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    assert acc > 0.6  # reaches ~0.79 after one short epoch


def test_imdb_embedding_lstm(real_data):
    from polykeras.datasets import imdb
    from polykeras.layers import LSTM, Dense, Embedding
    from polykeras.preprocessing import sequence

    keras.utils.set_random_seed(4)
    max_features, maxlen = 20000, 80
    (x_train, y_train), (x_test, y_test) = imdb.load_data(num_words=max_features)
    x_train = sequence.pad_sequences(x_train, maxlen=maxlen)
    x_test = sequence.pad_sequences(x_test, maxlen=maxlen)
    model = keras.Sequential()
    model.add(Embedding(max_features, 32))
    model.add(LSTM(32, dropout=0.2, recurrent_dropout=0.2))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=2, verbose=0)
    score, acc = model.evaluate(x_test, y_test, batch_size=32, verbose=0)
    assert acc > 0.62  # reaches ~0.76 on this 5,000-review subset


def test_loaders_say_these_are_subsets(real_data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras.datasets.mnist.load_data()
    assert any(issubclass(w.category, DatasetSubsetWarning) and "17,435" in str(w.message) for w in caught)
