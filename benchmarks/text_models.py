"""ms per training step of the keras.io text models on IMDB shapes -- a transformer-block
classifier with a padding mask and a 2-layer bidirectional LSTM -- on polykeras's torch and
jax backends, against a plain PyTorch loop, a plain JAX + optax loop and Keras 3 ``fit`` on
each framework, measured in one run.

    python benchmarks/text_models.py                          # both workloads, every side
    python benchmarks/text_models.py --workloads bilstm --epochs 3 --steps 5 --sides polykeras-torch,plain-torch

Workloads (float32, batch 32, reviews of 200 word ids out of 20,000, Adam with Keras's
defaults; seeded synthetic data: each review 20-200 words long, pre-padded with id 0 as
``pad_sequences`` pads; random labels):

* ``transformer`` -- ``examples/imdb_transformer.py``: token + position embeddings (32),
  the token embedding with ``mask_zero=True``; one transformer block (``MultiHeadAttention``
  with 2 heads of key_dim 32, the padding mask as ``attention_mask``, a 32-unit relu
  feed-forward, two ``LayerNormalization``, dropout 0.1); masked ``GlobalAveragePooling1D``,
  dropout, ``Dense(20, relu)``, dropout, ``Dense(2, softmax)``; sparse categorical
  cross-entropy;
* ``bilstm`` -- ``examples/imdb_bidirectional_lstm.py``: ``Embedding(20000, 128)``,
  ``Bidirectional(LSTM(64, return_sequences=True))``, ``Bidirectional(LSTM(64))``,
  ``Dense(1, sigmoid)``; binary cross-entropy; no mask (as keras.io writes it).

Sides, all on the CPU with the frameworks' default thread counts:

* ``polykeras-torch`` / ``polykeras-jax``: the model built with ``polykeras``,
  ``compile(backend="torch" | "jax")``, ``model.fit(x, y, epochs=1, verbose=0)`` per epoch,
  timed from ``on_epoch_begin`` to ``on_epoch_end`` (``measure.epoch_timer``);
* ``plain-torch``: the model as a PyTorch user writes it -- ``nn.Embedding``, ``nn.Linear``
  projections into ``F.scaled_dot_product_attention`` with the key padding mask,
  ``nn.LayerNorm``; one ``nn.LSTM(num_layers=2, bidirectional=True)`` (the fused kernel) --,
  logits into ``F.cross_entropy`` / ``binary_cross_entropy_with_logits``, ``torch.optim.Adam``,
  driven by the native torch loop's epoch (:class:`polykeras_conformance.native.torch_loop.Loop`);
* ``plain-jax``: the same as pure functions of a parameter list --
  ``jax.nn.dot_product_attention`` with the mask, ``lax.scan`` LSTMs (the backward one on the
  reversed sequence) --, one jitted ``value_and_grad`` + ``optax.adam`` step with donated
  buffers, driven by the native JAX loop's epoch (:class:`polykeras_conformance.native.jax_loop.Loop`);
* ``keras-torch`` / ``keras-jax``: Keras 3 ``fit`` of the same program (its own initial
  weights) with ``KERAS_BACKEND=torch`` / ``jax``, each in a worker process.

The plain loops start from the polykeras model's initial weights; before timing, each
prints its loss on the first batch in inference mode next to polykeras's ``evaluate`` on it
(they must agree to float32 tolerance). The sides then run interleaved epoch by epoch (the
order rotates); the first epoch of each is a warm-up. Reported: median ms/step and the
speed ratios ``plain / polykeras`` (target >= 0.9) and ``keras / polykeras`` (target > 1).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from polykeras_conformance.measure import epoch_timer

# this script's folder is on sys.path
from epoch_worker import EpochWorker, cell, plain_torch_loop, ratio, run_interleaved, serve

BATCH, MAXLEN, VOCAB = 32, 200, 20000
EMBED, HEADS, FF, RATE = 32, 2, 32, 0.1  # the transformer (key_dim = EMBED, as keras.io)
UNITS = 64  # each LSTM direction
WORKLOADS = {  # name -> (loss, description)
    "transformer": ("sparse_categorical_crossentropy",
                    f"transformer block, masked ({BATCH}x{MAXLEN}, {HEADS} heads, adam)"),
    "bilstm": ("binary_crossentropy", f"2x Bidirectional(LSTM({UNITS})) ({BATCH}x{MAXLEN}, adam)"),
}
BACKENDS = ("torch", "jax")
KINDS = ("polykeras", "plain", "keras")
SIDES = [f"{kind}-{b}" for b in BACKENDS for kind in KINDS]


def data(workload: str, steps: int):
    """IMDB-shaped reviews: 20-200 word ids, pre-padded with 0 to 200; random 0/1 labels."""
    rng = np.random.default_rng(0)
    n = BATCH * steps
    lengths = rng.integers(20, MAXLEN + 1, n)
    x = rng.integers(1, VOCAB, (n, MAXLEN)).astype(np.int32)
    x[np.arange(MAXLEN)[None, :] < (MAXLEN - lengths)[:, None]] = 0
    labels = rng.integers(0, 2, n)
    if WORKLOADS[workload][0] == "binary_crossentropy":
        return x, labels.astype(np.float32)[:, None]
    return x, labels.astype(np.int32)


def build(k, workload: str):
    """The keras.io model, for polykeras or Keras (``k``)."""
    L, ops = k.layers, k.ops
    if workload == "bilstm":
        inputs = k.Input(shape=(None,), dtype="int32")
        x = L.Embedding(VOCAB, 128)(inputs)
        x = L.Bidirectional(L.LSTM(UNITS, return_sequences=True))(x)
        x = L.Bidirectional(L.LSTM(UNITS))(x)
        return k.Model(inputs, L.Dense(1, activation="sigmoid")(x))

    class TransformerBlock(L.Layer):
        def __init__(self):
            super().__init__()
            self.att = L.MultiHeadAttention(num_heads=HEADS, key_dim=EMBED)
            self.ffn = k.Sequential([L.Dense(FF, activation="relu"), L.Dense(EMBED)])
            self.layernorm1 = L.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = L.LayerNormalization(epsilon=1e-6)
            self.dropout1, self.dropout2 = L.Dropout(RATE), L.Dropout(RATE)
            self.supports_masking = True

        def call(self, inputs, mask=None):
            padding_mask = None if mask is None else ops.cast(mask[:, None, :], dtype="int32")
            out1 = self.layernorm1(inputs + self.dropout1(self.att(inputs, inputs, attention_mask=padding_mask)))
            return self.layernorm2(out1 + self.dropout2(self.ffn(out1)))

    class TokenAndPositionEmbedding(L.Layer):
        def __init__(self):
            super().__init__()
            self.token_emb = L.Embedding(input_dim=VOCAB, output_dim=EMBED, mask_zero=True)
            self.pos_emb = L.Embedding(input_dim=MAXLEN, output_dim=EMBED)

        def call(self, x):
            positions = self.pos_emb(ops.arange(start=0, stop=ops.shape(x)[-1], step=1))
            return self.token_emb(x) + positions

        def compute_mask(self, inputs, mask=None):
            return ops.not_equal(inputs, 0)

    inputs = L.Input(shape=(MAXLEN,))
    x = TransformerBlock()(TokenAndPositionEmbedding()(inputs))
    x = L.Dropout(RATE)(L.GlobalAveragePooling1D()(x))
    x = L.Dropout(RATE)(L.Dense(20, activation="relu")(x))
    return k.Model(inputs, L.Dense(2, activation="softmax")(x))


class FitSide:
    """``fit`` of polykeras or Keras: one epoch per call."""

    def __init__(self, k, workload: str, steps: int, **compile_kwargs):
        self.x, self.y = data(workload, steps)
        self.model = build(k, workload)
        self.model.compile(optimizer=k.optimizers.Adam(), loss=WORKLOADS[workload][0], metrics=["accuracy"],
                           **compile_kwargs)
        self.timer = epoch_timer(k.callbacks.Callback)

    def epoch(self) -> tuple[float, float]:
        self.model.fit(self.x, self.y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[self.timer])
        return self.timer.seconds[-1], self.timer.losses[-1]


def keras_worker(workload: str, steps: int) -> None:
    import keras

    serve(FitSide(keras, workload, steps), keras.__version__)


# -- the plain loops ---------------------------------------------------------------------------------
def _weights(model, workload: str) -> dict:
    """The polykeras model's initial weights by role (float32 NumPy)."""
    if workload == "bilstm":
        w = model.get_weights()
        return {"embeddings": w[0], "lstm": [w[1:4], w[4:7], w[7:10], w[10:13]], "dense": w[13:15]}
    embedding, block = (next(layer for layer in model.layers if type(layer).__name__ == name)
                        for name in ("TokenAndPositionEmbedding", "TransformerBlock"))
    wq, bq, wk, bk, wv, bv, wo, bo = block.att.get_weights()
    f1, fb1, f2, fb2 = (v for dense in block.ffn.layers for v in dense.get_weights())
    d1, d2 = (layer.get_weights() for layer in model.layers if type(layer).__name__ == "Dense")
    return {"tok": embedding.token_emb.get_weights()[0], "pos": embedding.pos_emb.get_weights()[0],
            "q": (wq.reshape(EMBED, -1), bq.reshape(-1)), "k": (wk.reshape(EMBED, -1), bk.reshape(-1)),
            "v": (wv.reshape(EMBED, -1), bv.reshape(-1)), "o": (wo.reshape(-1, EMBED), bo), "ff1": (f1, fb1),
            "ff2": (f2, fb2), "ln1": tuple(block.layernorm1.get_weights()), "ln2": tuple(block.layernorm2.get_weights()),
            "d1": tuple(d1), "d2": tuple(d2)}


def plain_torch(workload: str, w: dict):
    import torch
    import torch.nn.functional as F
    from torch import nn


    def linear(kernel, bias):
        layer = nn.Linear(*kernel.shape)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
            layer.bias.copy_(torch.from_numpy(bias))
        return layer

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding.from_pretrained(torch.from_numpy(w["tok"]), freeze=False)
            self.pos = nn.Embedding.from_pretrained(torch.from_numpy(w["pos"]), freeze=False)
            self.q, self.k, self.v, self.o = (linear(*w[n]) for n in "qkvo")
            self.ff1, self.ff2, self.d1, self.d2 = (linear(*w[n]) for n in ("ff1", "ff2", "d1", "d2"))
            self.ln1, self.ln2 = nn.LayerNorm(EMBED, eps=1e-6), nn.LayerNorm(EMBED, eps=1e-6)
            with torch.no_grad():
                for ln, name in ((self.ln1, "ln1"), (self.ln2, "ln2")):
                    ln.weight.copy_(torch.from_numpy(w[name][0]))
                    ln.bias.copy_(torch.from_numpy(w[name][1]))
            self.drop = nn.Dropout(RATE)

        def forward(self, ids):
            mask = ids != 0
            x = self.tok(ids) + self.pos.weight[:ids.shape[1]]
            b, s, _ = x.shape
            q, k, v = (p(x).view(b, s, HEADS, EMBED).transpose(1, 2) for p in (self.q, self.k, self.v))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
            x = self.ln1(x + self.drop(self.o(a.transpose(1, 2).reshape(b, s, HEADS * EMBED))))
            x = self.ln2(x + self.drop(self.ff2(F.relu(self.ff1(x)))))
            m = mask[..., None].to(x.dtype)
            x = self.drop((x * m).sum(1) / m.sum(1).clamp_min(1))
            return self.d2(self.drop(F.relu(self.d1(x))))  # logits

    class BiLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding.from_pretrained(torch.from_numpy(w["embeddings"]), freeze=False)
            self.lstm = nn.LSTM(128, UNITS, num_layers=2, bidirectional=True, batch_first=True)
            with torch.no_grad():  # torch's gate order is Keras's; one bias, so bias_hh is zero
                for (kernel, recurrent, bias), suffix in zip(w["lstm"], ("_l0", "_l0_reverse", "_l1", "_l1_reverse")):
                    getattr(self.lstm, "weight_ih" + suffix).copy_(torch.from_numpy(kernel.T))
                    getattr(self.lstm, "weight_hh" + suffix).copy_(torch.from_numpy(recurrent.T))
                    getattr(self.lstm, "bias_ih" + suffix).copy_(torch.from_numpy(bias))
                    getattr(self.lstm, "bias_hh" + suffix).zero_()
            self.dense = linear(*w["dense"])

        def forward(self, ids):
            _, (h, _) = self.lstm(self.emb(ids))
            return self.dense(torch.cat([h[-2], h[-1]], -1))  # the last layer's forward and backward states

    return plain_torch_loop((Transformer if workload == "transformer" else BiLSTM)(), WORKLOADS[workload][0])


def plain_jax(workload: str, w: dict):
    import jax
    import jax.numpy as jnp
    import optax
    from jax import lax

    from polykeras_conformance.native import jax_loop

    def dropout(x, key, training):
        if not training:
            return x
        return jnp.where(jax.random.bernoulli(key, 1 - RATE, x.shape), x / (1 - RATE), 0)

    def layer_norm(x, gamma, beta):
        mean = x.mean(-1, keepdims=True)
        return (x - mean) * lax.rsqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-6) * gamma + beta

    def transformer(p, ids, key, training):
        keys = jax.random.split(key, 4)
        mask = ids != 0
        x = p["tok"][ids] + p["pos"][:ids.shape[1]]
        b, s, _ = x.shape
        q, k, v = ((x @ p[n][0] + p[n][1]).reshape(b, s, HEADS, EMBED) for n in "qkv")
        a = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :])
        x = layer_norm(x + dropout(a.reshape(b, s, -1) @ p["o"][0] + p["o"][1], keys[0], training), *p["ln1"])
        f = jax.nn.relu(x @ p["ff1"][0] + p["ff1"][1]) @ p["ff2"][0] + p["ff2"][1]
        x = layer_norm(x + dropout(f, keys[1], training), *p["ln2"])
        m = mask[..., None].astype(x.dtype)
        x = dropout((x * m).sum(1) / jnp.maximum(m.sum(1), 1), keys[2], training)
        x = dropout(jax.nn.relu(x @ p["d1"][0] + p["d1"][1]), keys[3], training)
        return x @ p["d2"][0] + p["d2"][1]

    def lstm(p, x):  # x (B, T, in) -> every h (B, T, UNITS); Keras's gates i, f, c, o
        kernel, recurrent, bias = p

        def cell(carry, x_t):
            h, c = carry
            i, f, g, o = jnp.split(x_t @ kernel + bias + h @ recurrent, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((x.shape[0], UNITS), x.dtype)
        _, hs = lax.scan(cell, (zeros, zeros), jnp.swapaxes(x, 0, 1))
        return jnp.swapaxes(hs, 0, 1)

    def bilstm(p, ids, key, training):
        x = p["embeddings"][ids]
        fw, bw = lstm(p["lstm"][0], x), jnp.flip(lstm(p["lstm"][1], jnp.flip(x, 1)), 1)
        x = jnp.concatenate([fw, bw], -1)
        h = jnp.concatenate([lstm(p["lstm"][2], x)[:, -1], lstm(p["lstm"][3], jnp.flip(x, 1))[:, -1]], -1)
        return h @ p["dense"][0] + p["dense"][1]

    forward = transformer if workload == "transformer" else bilstm
    loss_name = WORKLOADS[workload][0]

    def loss_fn(params, x, y, key, training=True):
        out = forward(params, x, key, training)
        if loss_name == "binary_crossentropy":
            return optax.sigmoid_binary_cross_entropy(out, y).mean(), ((out > 0) == (y > 0.5)).sum()
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean(), (out.argmax(-1) == y).sum()

    class Plain(jax_loop.Loop):
        """``Loop``'s epoch (``fit_epochs``) on this function; ``Loop.__init__`` builds chains only."""

        def __init__(self):
            device = jax.devices("cpu")[0]
            self.loss_name, self.logits = loss_name, True
            self.params = jax.device_put(w, device)
            self.tx = optax.adam(1e-3, 0.9, 0.999, 1e-7)  # Keras's Adam defaults
            self.opt_state = jax.device_put(self.tx.init(self.params), device)
            self.key = jax.device_put(jax.random.key(0), device)

            def step(params, opt_state, x, y, step_number):
                key = jax.random.fold_in(self.key, step_number)
                (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, key)
                updates, opt_state = self.tx.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), opt_state, loss, correct

            self.step = jax.jit(step, donate_argnums=(0, 1))
            self.rng = np.random.default_rng(1)
            self.losses = []

        def inference_loss(self, x, y) -> float:
            x, y = self.arrays(x, y)
            return float(loss_fn(self.params, x, y, self.key, training=False)[0])

    return Plain()


PLAIN = {"torch": plain_torch, "jax": plain_jax}


class PlainSide:
    def __init__(self, loop, workload: str, steps: int):
        self.x, self.y = data(workload, steps)
        self.loop = loop

    def epoch(self) -> tuple[float, float]:
        return self.loop.fit_epochs(self.x, self.y, BATCH, 1)[0], self.loop.losses[-1]


# -- the run -----------------------------------------------------------------------------------------
def make_sides(workload: str, wanted: list[str], steps: int) -> dict:
    import polykeras

    sides = {}
    for backend in BACKENDS:
        if not {f"polykeras-{backend}", f"plain-{backend}"} & set(wanted):
            continue
        polykeras.utils.set_random_seed(0)
        side = FitSide(polykeras, workload, steps, backend=backend, dtype="float32")
        if f"polykeras-{backend}" in wanted:
            sides[f"polykeras-{backend}"] = side
        if f"plain-{backend}" in wanted:
            loop = PLAIN[backend](workload, _weights(side.model, workload))
            x, y = side.x[:BATCH], side.y[:BATCH]
            initial = side.model.evaluate(x, y, batch_size=BATCH, verbose=0)[0]
            first = loop.inference_loss(x, y)
            diff = abs(first - initial)
            print(f"check {workload} {backend}: loss on batch 0 at the initial weights: polykeras {initial:.6f}, "
                  f"plain {first:.6f}, |diff| {diff:.1e} ({'ok' if diff <= 1e-5 * max(1.0, abs(initial)) else 'MISMATCH'})",
                  flush=True)
            sides[f"plain-{backend}"] = PlainSide(loop, workload, steps)
    for backend in BACKENDS:
        if f"keras-{backend}" in wanted:
            sides[f"keras-{backend}"] = EpochWorker(__file__, ["--keras-worker", workload, "--steps", str(steps)],
                                                    {"KERAS_BACKEND": backend})
    return {name: sides[name] for name in SIDES if name in sides}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset of " + ",".join(WORKLOADS))
    p.add_argument("--epochs", type=int, default=4, help="epochs per side, the first a warm-up (default 4)")
    p.add_argument("--steps", type=int, default=10, help="batches per epoch (default 10)")
    p.add_argument("--sides", default=",".join(SIDES), help="comma-separated subset of " + ",".join(SIDES))
    p.add_argument("--keras-worker", metavar="WORKLOAD", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.keras_worker:
        keras_worker(args.keras_worker, args.steps)
        return 0
    wanted, workloads = args.sides.split(","), args.workloads.split(",")
    unknown = sorted(set(wanted) - set(SIDES)) + sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        p.error(f"unknown side(s) or workload(s) {', '.join(unknown)}; sides: {', '.join(SIDES)}; "
                f"workloads: {', '.join(WORKLOADS)}")
    import jax
    import torch

    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), jax {jax.__version__}, "
          f"{os.cpu_count()} cpus, python {sys.version.split()[0]}; {args.steps} steps/epoch, "
          f"{args.epochs} epochs per side (first is warm-up), interleaved", flush=True)
    medians = {}
    for workload in workloads:
        print(f"{workload}: {WORKLOADS[workload][1]}", flush=True)
        medians[workload] = run_interleaved(make_sides(workload, wanted, args.steps), args.epochs, args.steps)

    print()
    print("| workload (batch x words, optimizer) | framework | polykeras ms/step | plain loop ms/step "
          "| Keras 3 fit ms/step | plain / polykeras (>= 0.9) | keras / polykeras (> 1) |")
    print("|---|---|---|---|---|---|---|")
    for workload, med in medians.items():
        for b in BACKENDS:
            pk, pl, k = (med.get(f"{kind}-{b}") for kind in KINDS)
            if pk is None and pl is None and k is None:
                continue
            print(f"| {WORKLOADS[workload][1]} | {b} | {cell(pk)} | {cell(pl)} | {cell(k)} | "
                  f"{cell(ratio(pl, pk), '{:.2f}x')} | {cell(ratio(k, pk), '{:.2f}x')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
