"""Bidirectional LSTM on IMDB (keras.io: examples/nlp/bidirectional_lstm_imdb), with only the import changed.

Two stacked bidirectional LSTMs over the first 200 words of each review, a sigmoid on top.
The backend is ``POLYKERAS_BACKEND`` (numpy, torch, jax, keras-jax, ...); ``--keras`` runs the same
program on Keras 3 itself (``KERAS_BACKEND`` chooses its framework), for comparison.

    POLYKERAS_BACKEND=torch python examples/imdb_bidirectional_lstm.py --limit 2000 --epochs 1
    POLYKERAS_BACKEND=jax python examples/imdb_bidirectional_lstm.py            # keras.io's run: 2 epochs
"""

import argparse
import time

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--epochs", type=int, default=2)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--limit", type=int, default=None, help="train and validate on the first N reviews of each split")
p.add_argument("--maxlen", type=int, default=200, help="words kept per review (keras.io: 200)")
p.add_argument("--seed", type=int, default=1337)
p.add_argument("--keras", action="store_true", help="run on Keras 3 (import keras) instead of polykeras")
args = p.parse_args()

if args.keras:
    import keras
    from keras import layers
    import polykeras.datasets  # Keras 3 fetches imdb.npz again when the local file is not the official one
    keras.datasets.imdb.load_data = polykeras.datasets.imdb.load_data  # (a subset): Keras's algorithm, same file
else:
    import polykeras as keras
    from polykeras import layers

keras.utils.set_random_seed(args.seed)
max_features = 20000  # Only consider the top 20k words
maxlen = args.maxlen  # Only consider the first 200 words of each movie review

# Input for variable-length sequences of integers
inputs = keras.Input(shape=(None,), dtype="int32")
# Embed each integer in a 128-dimensional vector
x = layers.Embedding(max_features, 128)(inputs)
# Add 2 bidirectional LSTMs
x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(x)
x = layers.Bidirectional(layers.LSTM(64))(x)
# Add a classifier
outputs = layers.Dense(1, activation="sigmoid")(x)
model = keras.Model(inputs, outputs)
model.summary()

(x_train, y_train), (x_val, y_val) = keras.datasets.imdb.load_data(num_words=max_features)
x_train, y_train, x_val, y_val = x_train[:args.limit], y_train[:args.limit], x_val[:args.limit], y_val[:args.limit]
print(len(x_train), "Training sequences")
print(len(x_val), "Validation sequences")
# Use pad_sequence to standardize sequence length:
# this will truncate sequences longer than 200 words and zero-pad sequences shorter than 200 words.
x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)
x_val = keras.utils.pad_sequences(x_val, maxlen=maxlen)

model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, validation_data=(x_val, y_val))
seconds = time.perf_counter() - start
logs = {k: v[-1] for k, v in history.history.items()}
print(f"final: loss {logs['loss']:.4f} accuracy {logs['accuracy']:.4f} val_loss {logs['val_loss']:.4f} "
      f"val_accuracy {logs['val_accuracy']:.4f} losses {[round(v, 4) for v in history.history['loss']]} "
      f"fit {seconds:.1f} s")
