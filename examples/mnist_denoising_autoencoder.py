"""Convolutional autoencoder for image denoising (keras.io: examples/vision/autoencoder), with only the import
changed.

A Conv2D/MaxPooling2D encoder (28x28 -> 7x7x32) and a Conv2DTranspose decoder back to 28x28, trained with
binary cross-entropy first to reconstruct MNIST digits, then to remove Gaussian noise (factor 0.4) from them.
The backend is ``POLYKERAS_BACKEND`` (numpy, torch, jax, keras-jax, ...); ``--keras`` runs the same program on
Keras 3 itself (``KERAS_BACKEND`` chooses its framework), for comparison. keras.io trains 50 + 100 epochs;
``--epochs`` sets both phases (``--denoise-epochs`` the second alone).

    POLYKERAS_BACKEND=torch python examples/mnist_denoising_autoencoder.py --limit 2000 --epochs 1
"""

import argparse
import time

import numpy as np

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--epochs", type=int, default=2, help="epochs of each phase (keras.io: 50, then 100)")
p.add_argument("--denoise-epochs", type=int, default=None, help="epochs of the denoising phase (default: --epochs)")
p.add_argument("--batch-size", type=int, default=128)
p.add_argument("--limit", type=int, default=None, help="train and validate on the first N images of each split")
p.add_argument("--seed", type=int, default=1337)
p.add_argument("--keras", action="store_true", help="run on Keras 3 (import keras) instead of polykeras")
args = p.parse_args()

if args.keras:
    import keras
    from keras import layers
    from polykeras.datasets import mnist  # Keras 3 fetches mnist.npz again when the local file is a subset
    from keras.models import Model
else:
    import polykeras as keras
    from polykeras import layers
    from polykeras.datasets import mnist
    from polykeras.models import Model

keras.utils.set_random_seed(args.seed)


def preprocess(array):
    """Normalizes the supplied array and reshapes it."""
    array = array.astype("float32") / 255.0
    array = np.reshape(array, (len(array), 28, 28, 1))
    return array


def noise(array):
    """Adds random noise to each image in the supplied array."""
    noise_factor = 0.4
    noisy_array = array + noise_factor * np.random.normal(loc=0.0, scale=1.0, size=array.shape)
    return np.clip(noisy_array, 0.0, 1.0).astype("float32")


# Since we only need images from the dataset to encode and decode, we won't use the labels.
(train_data, _), (test_data, _) = mnist.load_data()
train_data, test_data = train_data[:args.limit], test_data[:args.limit]

# Normalize and reshape the data
train_data = preprocess(train_data)
test_data = preprocess(test_data)

# Create a copy of the data with added noise
noisy_train_data = noise(train_data)
noisy_test_data = noise(test_data)

input = layers.Input(shape=(28, 28, 1))

# Encoder
x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(input)
x = layers.MaxPooling2D((2, 2), padding="same")(x)
x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(x)
x = layers.MaxPooling2D((2, 2), padding="same")(x)

# Decoder
x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
x = layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)

# Autoencoder
autoencoder = Model(input, x)
autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
autoencoder.summary()

start = time.perf_counter()
# First, train the autoencoder to reconstruct the images
first = autoencoder.fit(x=train_data, y=train_data, epochs=args.epochs, batch_size=args.batch_size, shuffle=True,
                        validation_data=(test_data, test_data))
# Then to map noisy digits to clean ones
history = autoencoder.fit(x=noisy_train_data, y=train_data, epochs=args.denoise_epochs or args.epochs,
                          batch_size=args.batch_size, shuffle=True, validation_data=(noisy_test_data, test_data))
seconds = time.perf_counter() - start
losses = first.history["loss"] + history.history["loss"]
# a denoiser that does nothing, for scale: the noisy image itself as the prediction
guess = np.clip(noisy_test_data, 1e-7, 1 - 1e-7)
identity = float(np.mean(-(test_data * np.log(guess) + (1 - test_data) * np.log(1 - guess))))
print(f"final: loss {losses[-1]:.4f} val_loss {history.history['val_loss'][-1]:.4f} "
      f"reconstruction val_loss {first.history['val_loss'][-1]:.4f} noisy-input val_loss {identity:.4f} "
      f"losses {[round(v, 4) for v in losses]} fit {seconds:.1f} s")
