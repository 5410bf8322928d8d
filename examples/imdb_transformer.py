"""Text classification with Transformer (keras.io: examples/nlp/text_classification_with_transformer), with only
the import changed -- and with masking: the token embedding has ``mask_zero=True``, so the padding of
``pad_sequences`` is left out of the attention and of the average pooling.

One transformer block (multi-head self-attention and a feed-forward network, each with dropout, a residual and a
layer normalization) over token + position embeddings of the first 200 words of each review, averaged over the
words, then a small classifier. The backend is ``POLYKERAS_BACKEND`` (numpy, torch, jax, keras-jax, ...);
``--keras`` runs the same program on Keras 3 itself (``KERAS_BACKEND`` chooses its framework), for comparison;
``--no-mask`` is keras.io's program as written (padding attended to and averaged).

    POLYKERAS_BACKEND=torch python examples/imdb_transformer.py --limit 2000 --epochs 1
    POLYKERAS_BACKEND=jax python examples/imdb_transformer.py                   # keras.io's run: 2 epochs
"""

import argparse
import time

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--epochs", type=int, default=2)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--limit", type=int, default=None, help="train and validate on the first N reviews of each split")
p.add_argument("--maxlen", type=int, default=200, help="words kept per review (keras.io: 200)")
p.add_argument("--no-mask", action="store_true", help="keras.io's program as written: no padding mask")
p.add_argument("--seed", type=int, default=1337)
p.add_argument("--keras", action="store_true", help="run on Keras 3 (import keras) instead of polykeras")
args = p.parse_args()

if args.keras:
    import keras
    from keras import layers, ops
    import polykeras.datasets  # Keras 3 fetches imdb.npz again when the local file is not the official one
    keras.datasets.imdb.load_data = polykeras.datasets.imdb.load_data  # (a subset): Keras's algorithm, same file
else:
    import polykeras as keras
    from polykeras import layers, ops

keras.utils.set_random_seed(args.seed)


class TransformerBlock(layers.Layer):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)
        self.supports_masking = True  # the output keeps the input's padding mask, for the pooling

    def call(self, inputs, mask=None):
        # the padding mask (batch, words) as an attention mask (batch, 1, words): no query attends to padding
        padding_mask = None if mask is None else ops.cast(mask[:, None, :], dtype="int32")
        attn_output = self.att(inputs, inputs, attention_mask=padding_mask)
        attn_output = self.dropout1(attn_output)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output)
        return self.layernorm2(out1 + ffn_output)


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim, mask_zero=True):
        super().__init__()
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim, mask_zero=mask_zero)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)
        self.mask_zero = mask_zero

    def call(self, x):
        maxlen = ops.shape(x)[-1]
        positions = ops.arange(start=0, stop=maxlen, step=1)
        positions = self.pos_emb(positions)
        x = self.token_emb(x)
        return x + positions

    def compute_mask(self, inputs, mask=None):
        return ops.not_equal(inputs, 0) if self.mask_zero else None  # word 0 is the padding


vocab_size = 20000  # Only consider the top 20k words
maxlen = args.maxlen  # Only consider the first 200 words of each movie review
(x_train, y_train), (x_val, y_val) = keras.datasets.imdb.load_data(num_words=vocab_size)
x_train, y_train, x_val, y_val = x_train[:args.limit], y_train[:args.limit], x_val[:args.limit], y_val[:args.limit]
print(len(x_train), "Training sequences")
print(len(x_val), "Validation sequences")
x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)
x_val = keras.utils.pad_sequences(x_val, maxlen=maxlen)

embed_dim = 32  # Embedding size for each token
num_heads = 2  # Number of attention heads
ff_dim = 32  # Hidden layer size in feed forward network inside transformer

inputs = layers.Input(shape=(maxlen,))
embedding_layer = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim, mask_zero=not args.no_mask)
x = embedding_layer(inputs)
transformer_block = TransformerBlock(embed_dim, num_heads, ff_dim)
x = transformer_block(x)
x = layers.GlobalAveragePooling1D()(x)
x = layers.Dropout(0.1)(x)
x = layers.Dense(20, activation="relu")(x)
x = layers.Dropout(0.1)(x)
outputs = layers.Dense(2, activation="softmax")(x)

model = keras.Model(inputs=inputs, outputs=outputs)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, validation_data=(x_val, y_val))
seconds = time.perf_counter() - start
logs = {k: v[-1] for k, v in history.history.items()}
print(f"final: loss {logs['loss']:.4f} accuracy {logs['accuracy']:.4f} val_loss {logs['val_loss']:.4f} "
      f"val_accuracy {logs['val_accuracy']:.4f} losses {[round(v, 4) for v in history.history['loss']]} "
      f"fit {seconds:.1f} s")
