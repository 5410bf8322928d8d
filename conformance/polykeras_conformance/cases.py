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
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

Case = dict[str, Any]

ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "softplus", "swish",
               "exponential", "hard_sigmoid")


def _layer(class_name: str, **config) -> dict:
    return {"class_name": class_name, "config": config}


@st.composite
def _dense(draw):
    rank = draw(st.sampled_from([1, 2]))
    shape = tuple(draw(st.integers(1, 6)) for _ in range(rank))
    config = dict(units=draw(st.integers(1, 6)), activation=draw(st.sampled_from(ACTIVATIONS)),
                  use_bias=draw(st.booleans()))
    return [_layer("Dense", **config)], shape


@st.composite
def _activation(draw):
    return [_layer("Activation", activation=draw(st.sampled_from(ACTIVATIONS)))], (draw(st.integers(1, 7)),)


@st.composite
def _dropout(draw):
    return [_layer("Dropout", rate=draw(st.sampled_from([0.1, 0.3, 0.5])))], (draw(st.integers(2, 12)),)


@st.composite
def _spatial_dropout(draw):
    kind = draw(st.sampled_from(["SpatialDropout1D", "SpatialDropout2D"]))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(2 if kind.endswith("1D") else 3))
    return [_layer(kind, rate=draw(st.sampled_from([0.1, 0.3, 0.5])))], shape


@st.composite
def _reshaping(draw):
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)), 2)
    if draw(st.booleans()):
        return [_layer("Flatten")], shape
    return [_layer("Reshape", target_shape=(2, -1))], shape


def _window(draw, rank: int, padding_choices=("valid", "same")):
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    strides = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    padding = draw(st.sampled_from(padding_choices))
    spatial = tuple(draw(st.integers(k, k + 4)) for k in kernel)
    return kernel, strides, padding, spatial


def _grouped(draw, config: dict, channels: int) -> int:
    """Draw ``groups`` (1, 2 or 3; Keras's grouped convolution) for a convolution ``config`` of ``channels``
    input channels: filters and channels become multiples of it. Returns the channels."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    if groups > 1:
        config.update(filters=config["filters"] * groups, groups=groups)
    return channels * groups


@st.composite
def _conv2d(draw):
    kernel, strides, padding, spatial = _window(draw, 2)
    config = dict(filters=draw(st.integers(1, 4)), kernel_size=kernel, strides=strides, padding=padding,
                  activation=draw(st.sampled_from(["linear", "relu", "tanh"])), use_bias=draw(st.booleans()))
    channels = _grouped(draw, config, draw(st.integers(1, 3)))
    return [_layer("Conv2D", **config)], spatial + (channels,)


@st.composite
def _conv1d(draw):
    kernel, strides, padding, spatial = _window(draw, 1, ("valid", "same", "causal"))
    config = dict(filters=draw(st.integers(1, 4)), kernel_size=kernel, strides=strides, padding=padding,
                  activation=draw(st.sampled_from(["linear", "relu"])))
    channels = _grouped(draw, config, draw(st.integers(1, 3)))
    return [_layer("Conv1D", **config)], spatial + (channels,)


@st.composite
def _conv_transpose(draw):
    """Conv2DTranspose/Conv1DTranspose: kernels smaller and larger than the strides (the output window's
    placement, keras#22876), "valid" and "same", output_padding None or below the strides, dilation at stride 1."""
    kind = draw(st.sampled_from(["Conv2DTranspose", "Conv1DTranspose"]))
    rank = 2 if kind == "Conv2DTranspose" else 1
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = (tuple(draw(st.integers(1, 2)) for _ in range(rank)) if strides == (1,) * rank and draw(st.booleans())
                else (1,) * rank)
    output_padding = [draw(st.integers(0, s - 1)) for s in strides] if draw(st.booleans()) else None
    config = dict(filters=draw(st.integers(1, 3)), kernel_size=kernel, strides=strides,
                  padding=draw(st.sampled_from(["valid", "same"])), output_padding=output_padding,
                  dilation_rate=dilation, activation=draw(st.sampled_from(["linear", "relu", "tanh"])),
                  use_bias=draw(st.booleans()))
    spatial = tuple(draw(st.integers(2, 4)) for _ in range(rank))
    return [_layer(kind, **config)], spatial + (draw(st.integers(1, 3)),)


@st.composite
def _depthwise_conv(draw):
    """DepthwiseConv1D/2D (depth_multiplier 1-3) and SeparableConv1D/2D: the window rules of Conv1D/2D, dilation
    at stride 1."""
    kind = draw(st.sampled_from(["DepthwiseConv2D", "SeparableConv2D", "DepthwiseConv1D", "SeparableConv1D"]))
    rank = 2 if kind.endswith("2D") else 1
    kernel, strides, padding, spatial = _window(draw, rank)
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank)) if strides == (1,) * rank else (1,) * rank
    spatial = tuple(n + (k - 1) * (d - 1) for n, k, d in zip(spatial, kernel, dilation))
    config = dict(kernel_size=kernel, strides=strides, padding=padding, dilation_rate=dilation,
                  depth_multiplier=draw(st.integers(1, 3)),
                  activation=draw(st.sampled_from(["linear", "relu", "tanh"])),
                  use_bias=draw(st.booleans()))
    if kind.startswith("Separable"):
        config["filters"] = draw(st.integers(1, 4))
    return [_layer(kind, **config)], spatial + (draw(st.integers(1, 3)),)


@st.composite
def _pooling(draw):
    kind = draw(st.sampled_from(["MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D"]))
    rank = 1 if kind.endswith("1D") else 2
    pool, strides, padding, spatial = _window(draw, rank)
    return [_layer(kind, pool_size=pool, strides=strides, padding=padding)], spatial + (draw(st.integers(1, 3)),)


@st.composite
def _global_pooling(draw):
    kind = draw(st.sampled_from(["GlobalAveragePooling2D", "GlobalAveragePooling1D"]))
    spatial = tuple(draw(st.integers(1, 4)) for _ in range(2 if kind.endswith("2D") else 1))
    return [_layer(kind, keepdims=draw(st.booleans()))], spatial + (draw(st.integers(1, 3)),)


@st.composite
def _global_max_pooling(draw):
    kind = draw(st.sampled_from(["GlobalMaxPooling2D", "GlobalMaxPooling1D"]))
    spatial = tuple(draw(st.integers(1, 4)) for _ in range(2 if kind.endswith("2D") else 1))
    return [_layer(kind, keepdims=draw(st.booleans()))], spatial + (draw(st.integers(1, 3)),)


@st.composite
def _padding_cropping(draw):
    """ZeroPadding/Cropping 1D/2D in each of Keras's amount forms: an int, one int per axis, (before, after) pairs."""
    kind = draw(st.sampled_from(["ZeroPadding2D", "ZeroPadding1D", "Cropping2D", "Cropping1D"]))
    rank = 1 if kind.endswith("1D") else 2
    pairs = [(draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank)]
    form = draw(st.sampled_from(["int", "ints", "pairs"] if rank == 2 else ["int", "pairs"]))
    if form == "int":
        pairs = [(pairs[0][0],) * 2] * rank
        amount = pairs[0][0]
    elif form == "ints":
        pairs = [(b, b) for b, _ in pairs]
        amount = [b for b, _ in pairs]
    else:
        amount = pairs[0] if rank == 1 else pairs
    spatial = tuple(b + a + draw(st.integers(1, 3)) for b, a in pairs)  # cropping keeps at least one
    key = "cropping" if kind.startswith("Cropping") else "padding"
    return [_layer(kind, **{key: amount})], spatial + (draw(st.integers(1, 3)),)


@st.composite
def _upsampling(draw):
    if draw(st.booleans()):
        steps, channels = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        return [_layer("UpSampling1D", size=draw(st.integers(1, 3)))], (steps, channels)
    size = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    config = dict(size=size, interpolation=draw(st.sampled_from(["nearest", "bilinear"])))
    return [_layer("UpSampling2D", **config)], tuple(draw(st.integers(1, n)) for n in (4, 4, 3))


@st.composite
def _shape_layers(draw):
    kind = draw(st.sampled_from(["RepeatVector", "Permute", "Identity", "Rescaling"]))
    if kind == "RepeatVector":
        return [_layer(kind, n=draw(st.integers(1, 4)))], (draw(st.integers(1, 4)),)
    shape = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 3))))
    if kind == "Rescaling":  # a number, or one scale per channel
        scale = draw(st.one_of(st.floats(-2, 2), st.lists(st.floats(-2, 2), min_size=shape[-1], max_size=shape[-1])))
        return [_layer(kind, scale=scale, offset=draw(st.floats(-1, 1)))], shape
    if kind == "Identity":
        return [_layer(kind)], shape
    return [_layer(kind, dims=draw(st.permutations(range(1, len(shape) + 1))))], shape


@st.composite
def _batchnorm(draw):
    config = dict(momentum=draw(st.sampled_from([0.99, 0.5])), epsilon=draw(st.sampled_from([1e-3, 0.1])),
                  center=draw(st.booleans()), scale=draw(st.booleans()))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 3))))
    return [_layer("BatchNormalization", **config)], shape


@st.composite
def _layer_norm(draw):
    """Every axis form (the last, trailing axes, an inner axis, two apart), each weight combination,
    rms_scaling."""
    rank = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    axis = draw(st.sampled_from([-1, [-1], list(range(1, rank + 1)), 1, [1, rank]]))
    config = dict(axis=axis, epsilon=draw(st.sampled_from([1e-3, 0.1])), center=draw(st.booleans()),
                  scale=draw(st.booleans()), rms_scaling=draw(st.sampled_from([False, False, True])))
    return [_layer("LayerNormalization", **config)], shape


@st.composite
def _group_unit_norm(draw):
    """GroupNormalization (groups dividing the channels, -1: instance norm; center, scale, epsilon) and
    UnitNormalization over an int or a list of axes."""
    rank = draw(st.integers(1, 3))
    if draw(st.booleans()):
        groups = draw(st.sampled_from([1, 2, 3, -1]))
        shape = tuple(draw(st.integers(1, 3)) for _ in range(rank - 1)) + (abs(groups) * draw(st.integers(1, 2)),)
        config = dict(groups=groups, epsilon=draw(st.sampled_from([1e-3, 0.1])), center=draw(st.booleans()),
                      scale=draw(st.booleans()))
        return [_layer("GroupNormalization", **config)], shape
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    axis = draw(st.sampled_from([-1, 1, list(range(1, rank + 1))]))
    return [_layer("UnitNormalization", axis=axis)], shape


@st.composite
def _recurrent(draw):
    kind = draw(st.sampled_from(["SimpleRNN", "LSTM", "GRU"]))
    config = dict(units=draw(st.integers(1, 5)), return_sequences=draw(st.booleans()),
                  go_backwards=draw(st.booleans()), use_bias=draw(st.booleans()),
                  dropout=draw(st.sampled_from([0.0, 0.3])), recurrent_dropout=draw(st.sampled_from([0.0, 0.25])))
    if kind == "GRU":
        config["reset_after"] = draw(st.booleans())
    return [_layer(kind, **config)], (draw(st.integers(1, 5)), draw(st.integers(1, 4)))


@st.composite
def _conv_lstm(draw):
    """ConvLSTM2D and ConvLSTM1D: the window rules of Conv2D (dilation at stride 1) and the LSTM's options
    (return_sequences, go_backwards, dropout and recurrent dropout in training)."""
    rank = draw(st.sampled_from([1, 2]))
    kernel, strides, padding, spatial = _window(draw, rank)
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank)) if strides == (1,) * rank else (1,) * rank
    spatial = tuple(n + (k - 1) * (d - 1) for n, k, d in zip(spatial, kernel, dilation))
    config = dict(filters=draw(st.integers(1, 3)), kernel_size=kernel, strides=strides, padding=padding,
                  dilation_rate=dilation, activation=draw(st.sampled_from(["tanh", "relu"])),
                  use_bias=draw(st.booleans()), return_sequences=draw(st.booleans()),
                  go_backwards=draw(st.booleans()), dropout=draw(st.sampled_from([0.0, 0.3])),
                  recurrent_dropout=draw(st.sampled_from([0.0, 0.25])))
    return [_layer(f"ConvLSTM{rank}D", **config)], (draw(st.integers(1, 3)),) + spatial + (draw(st.integers(1, 3)),)


@st.composite
def _embedding(draw):
    vocab = draw(st.integers(2, 20))
    return [_layer("Embedding", input_dim=vocab, output_dim=draw(st.integers(1, 5)))], (draw(st.integers(1, 6)),), vocab


@st.composite
def _masked(draw):
    """``Embedding(mask_zero=True)`` into a recurrent layer (with sequences, then a Dense that passes the mask
    on and a masked GlobalAveragePooling1D); :func:`case_data` pads the ids (:func:`_padded`)."""
    vocab, steps = draw(st.integers(3, 12)), draw(st.integers(3, 6))
    (rnn,), _ = draw(_recurrent())
    layers = [_layer("Embedding", input_dim=vocab, output_dim=draw(st.integers(1, 4)), mask_zero=True), rnn]
    if rnn["config"]["return_sequences"]:
        layers += [_layer("Dense", units=draw(st.integers(1, 3)), activation="tanh"), _layer("GlobalAveragePooling1D")]
    return layers, (steps,), vocab


@st.composite
def _bidirectional(draw):
    """A recurrent layer of :func:`_recurrent` wrapped in ``Bidirectional`` (every merge mode; now and then a
    ``backward_layer`` of its own: other units for ``concat``, no bias, other dropout)."""
    (rnn,), shape = draw(_recurrent())
    rnn["config"]["go_backwards"] = False
    config = {"layer": rnn, "merge_mode": draw(st.sampled_from(["concat", "sum", "mul", "ave"]))}
    if draw(st.booleans()):
        backward = {**rnn["config"], "go_backwards": True, "use_bias": draw(st.booleans()),
                    "dropout": draw(st.sampled_from([0.0, 0.2]))}
        if config["merge_mode"] == "concat":
            backward["units"] = draw(st.integers(1, 4))
        config["backward_layer"] = {"class_name": rnn["class_name"], "config": backward}
    return [_layer("Bidirectional", **config)], shape


@st.composite
def _masked_bidirectional(draw):
    """``Embedding(mask_zero=True)`` into a ``Bidirectional`` (as :func:`_masked`): the backward layer reverses
    the mask with the sequence and both directions output zeros at masked steps with ``return_sequences``."""
    vocab, steps = draw(st.integers(3, 12)), draw(st.integers(3, 6))
    (bidirectional,), _ = draw(_bidirectional())
    layers = [_layer("Embedding", input_dim=vocab, output_dim=draw(st.integers(1, 4)), mask_zero=True), bidirectional]
    if bidirectional["config"]["layer"]["config"]["return_sequences"]:
        layers += [_layer("Dense", units=draw(st.integers(1, 3)), activation="tanh"), _layer("GlobalAveragePooling1D")]
    return layers, (steps,), vocab


@st.composite
def _time_distributed(draw):
    """``TimeDistributed`` over 1-3 time steps of a drawn Dense (on slices of rank 1 or 2), Conv2D, Flatten or
    Dropout (one parity mask per time step; now and then a ``noise_shape`` shared over a slice's axis)."""
    time = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["Dense", "Conv2D", "Flatten", "Dropout"]))
    if kind == "Dense":
        (inner,), shape = draw(_dense())
    elif kind == "Conv2D":
        kernel = tuple(draw(st.integers(1, 2)) for _ in range(2))
        inner = _layer("Conv2D", filters=draw(st.integers(1, 3)), kernel_size=kernel,
                       strides=draw(st.sampled_from([1, 2])), padding=draw(st.sampled_from(["valid", "same"])),
                       activation=draw(st.sampled_from(["linear", "tanh"])))
        shape = tuple(draw(st.integers(k, k + 2)) for k in kernel) + (draw(st.integers(1, 2)),)
    elif kind == "Flatten":
        inner, shape = _layer("Flatten"), (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    else:
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
        noise = draw(st.sampled_from([None, None, [None, 1, None]]))
        inner = _layer("Dropout", rate=draw(st.sampled_from([0.2, 0.5])), noise_shape=noise)
    return [_layer("TimeDistributed", layer=inner)], (time, *shape)


@st.composite
def _masked_time_distributed(draw):
    """``Embedding(mask_zero=True)`` into a ``TimeDistributed(Dense)``, whose output keeps the mask, into a
    recurrent layer that reads it (as :func:`_masked`)."""
    vocab, steps = draw(st.integers(3, 12)), draw(st.integers(3, 6))
    (rnn,), _ = draw(_recurrent())
    dense = _layer("Dense", units=draw(st.integers(1, 3)), activation=draw(st.sampled_from(["tanh", "relu"])))
    layers = [_layer("Embedding", input_dim=vocab, output_dim=draw(st.integers(1, 4)), mask_zero=True),
              _layer("TimeDistributed", layer=dense), rnn]
    return layers, (steps,), vocab


def _node(layer, *inbound) -> dict:
    """A graph node: a layer config (or ``"n<i>"``: call node ``i``'s layer again) on ``inbound``
    (``"in<k>"`` for input ``k``, ``"n<i>"`` for node ``i``'s output)."""
    return {"layer": layer, "inbound": list(inbound)}


@st.composite
def _elementwise_merge(draw, kind: str):
    """One merge over 2-3 inputs whose shapes broadcast under Keras's rule (lower ranks
    expanded at axis 1, sizes equal or 1)."""
    n = 2 if kind == "Subtract" else draw(st.integers(2, 3))
    rank = draw(st.integers(1, 3))
    full = [draw(st.integers(1, 4)) for _ in range(rank)]
    shapes = [full] + [[d if draw(st.booleans()) else 1 for d in full[rank - draw(st.integers(1, rank)):]]
                       for _ in range(n - 1)]
    shapes = draw(st.permutations(shapes))
    return _merge_graph(_layer(kind), shapes)


def _merge_graph(layer: dict, shapes: list) -> dict:
    """One merge layer over one input per shape."""
    return {"inputs": shapes, "nodes": [_node(layer, *[f"in{k}" for k in range(len(shapes))])], "outputs": ["n0"]}


@st.composite
def _concatenate(draw):
    """2-3 inputs of one rank, sizes differing only along a drawn (never the batch) axis."""
    rank = draw(st.integers(1, 3))
    base = [draw(st.integers(1, 3)) for _ in range(rank)]
    axis = draw(st.integers(-rank, rank).filter(lambda a: a % (rank + 1) != 0))
    shapes = [[draw(st.integers(1, 3)) if i == axis % (rank + 1) - 1 else d for i, d in enumerate(base)]
              for _ in range(draw(st.integers(2, 3)))]
    return _merge_graph(_layer("Concatenate", axis=axis), shapes)


@st.composite
def _dot(draw):
    """Rank 2 or 3 inputs (batch included), contracted along drawn axes, normalised or not."""
    ranks = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    size = draw(st.integers(1, 4))
    axes = [draw(st.integers(1, r)) for r in ranks]
    shapes = [[size if i + 1 == a else draw(st.integers(1, 3)) for i in range(r)] for r, a in zip(ranks, axes)]
    same = axes[0] == axes[1] and draw(st.booleans())  # Keras's int form, axes=k
    return _merge_graph(_layer("Dot", axes=axes[0] if same else axes, normalize=draw(st.booleans())), shapes)


@st.composite
def _graph_structure(draw, kind: str):
    """A residual block, a layer shared by two inputs, a nested Sequential, or dropout on two branches."""
    d, u = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    act = draw(st.sampled_from(["relu", "tanh", "linear"]))
    if kind == "residual":
        nodes = [_node(_layer("Dense", units=u, activation=act), "in0"), _node(_layer("Dense", units=u), "n0"),
                 _node(_layer("Add"), "n0", "n1"), _node(_layer("Dense", units=2), "n2")]
        return {"inputs": [[d]], "nodes": nodes, "outputs": ["n3"]}
    if kind == "shared":
        merge = draw(st.sampled_from(["Concatenate", "Average", "Subtract"]))
        nodes = [_node(_layer("Dense", units=u, activation=act), "in0"), _node("n0", "in1"),
                 _node(_layer(merge), "n0", "n1"), _node(_layer("Dense", units=2), "n2")]
        return {"inputs": [[d], [d]], "nodes": nodes, "outputs": ["n3"]}
    if kind == "nested":
        inner = _layer("Sequential", name="inner", layers=[_layer("Dense", units=u, activation=act),
                                                           _layer("Dense", units=d)])
        nodes = [_node(inner, "in0"), _node(_layer("Multiply"), "n0", "in0"), _node(_layer("Dense", units=2), "n1")]
        return {"inputs": [[d]], "nodes": nodes, "outputs": ["n2"]}
    rates = (draw(st.sampled_from([0.2, 0.5])), draw(st.sampled_from([0.1, 0.4])))
    nodes = [_node(_layer("Dense", units=u, activation=act), "in0"), _node(_layer("Dropout", rate=rates[0]), "n0"),
             _node(_layer("Dropout", rate=rates[1]), "n0"), _node(_layer("Concatenate"), "n1", "n2")]
    return {"inputs": [[d]], "nodes": nodes, "outputs": ["n3"]}


@st.composite
def _recurrent_states(draw):
    """keras.io's sequence-to-sequence shape: an encoder's ``return_state`` states (a recurrent layer's, or
    one direction's of a Bidirectional) start a decoder (``initial_state``, a node's ``"initial_state"``
    refs; ``"n<i>:<j>"`` is node ``i``'s tensor ``j``), the decoder's own returned state (or its output)
    into a Dense; drawn kind, sizes, directions, dropout. Now and then the decoder is a Bidirectional,
    started from both directions' states (the list split in half, as Keras splits it)."""
    kind = draw(st.sampled_from(["SimpleRNN", "LSTM", "GRU"]))
    units, n = draw(st.integers(1, 4)), 2 if kind == "LSTM" else 1

    def rnn(**config):
        extra = {"reset_after": draw(st.booleans())} if kind == "GRU" else {}
        return _layer(kind, units=units, go_backwards=draw(st.booleans()), dropout=draw(st.sampled_from([0.0, 0.3])),
                      recurrent_dropout=draw(st.sampled_from([0.0, 0.25])), **extra, **config)

    decoder_states = draw(st.booleans())
    encoder, first = rnn(return_state=True), 1
    if draw(st.booleans()):  # a Bidirectional encoder: [output, *forward states, *backward states]
        encoder["config"]["go_backwards"] = False  # (the wrapper makes the backward copy)
        encoder = _layer("Bidirectional", layer=encoder, merge_mode=draw(st.sampled_from(["concat", "sum", "mul"])))
        first += n * draw(st.integers(0, 1))  # the decoder starts from one direction's states
    decoder, states = rnn(return_sequences=draw(st.booleans()), return_state=decoder_states), \
        [f"n0:{first + j}" for j in range(n)]
    if draw(st.booleans()):  # a Bidirectional decoder: forward states, then backward ones
        decoder["config"]["go_backwards"] = False
        decoder = _layer("Bidirectional", layer=decoder, merge_mode=draw(st.sampled_from(["concat", "sum", "ave"])))
        backward = 1 + n if encoder["class_name"] == "Bidirectional" and draw(st.booleans()) else first
        states += [f"n0:{backward + j}" for j in range(n)]
    nodes = [_node(encoder, "in0"), {**_node(decoder, "in1"), "initial_state": states},
             _node(_layer("Dense", units=2), f"n1:{n}" if decoder_states else "n1")]
    shapes = [[draw(st.integers(1, 4)), draw(st.integers(1, 3))] for _ in range(2)]
    return {"inputs": shapes, "nodes": nodes, "outputs": ["n2"]}


#: group: (strategy, share of ``examples_per_group`` drawn): one group per merge kind, so that
#: every kind is drawn even in quick mode; Dot has the most regimes (ranks, axes, normalize).
GRAPH_STRATEGIES = {
    **{kind: (lambda kind=kind: _elementwise_merge(kind), 0.5)
       for kind in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")},
    "Concatenate": (_concatenate, 0.5), "Dot": (_dot, 1.0),
    **{f"Graph:{kind}": (lambda kind=kind: _graph_structure(kind), 0.5)
       for kind in ("residual", "shared", "nested", "branches")},
    "Graph:states": (_recurrent_states, 0.5),
}

STRATEGIES = {
    "Dense": _dense, "Activation": _activation, "Dropout": _dropout, "Flatten/Reshape": _reshaping,
    "Conv2D": _conv2d, "Conv1D": _conv1d, "Pooling": _pooling, "GlobalAveragePooling": _global_pooling,
    "BatchNormalization": _batchnorm, "Recurrent": _recurrent, "ConvLSTM": _conv_lstm, "Embedding": _embedding,
    "LayerNormalization": _layer_norm, "GlobalMaxPooling": _global_max_pooling,
    "Padding/Cropping": _padding_cropping, "UpSampling": _upsampling,
    "RepeatVector/Permute/Identity/Rescaling": _shape_layers,
    "Group/UnitNormalization": _group_unit_norm, "SpatialDropout": _spatial_dropout,
    "ConvTranspose": _conv_transpose, "Depthwise/SeparableConv": _depthwise_conv, "Masking": _masked,
    "Bidirectional": _bidirectional, "Masking:Bidirectional": _masked_bidirectional,
    "TimeDistributed": _time_distributed, "Masking:TimeDistributed": _masked_time_distributed,
}


@st.composite
def _noise(draw):
    """GaussianNoise (stddev) and GaussianDropout (rate) before a Dense, in training: the parity noise
    (the noise layer first, so that the case's id names it)."""
    units = draw(st.integers(1, 5))
    if draw(st.booleans()):
        layer = _layer("GaussianNoise", stddev=draw(st.sampled_from([0.1, 0.5, 1.0])))
    else:
        layer = _layer("GaussianDropout", rate=draw(st.sampled_from([0.1, 0.3, 0.6])))
    return [layer, _layer("Dense", units=units)], (draw(st.integers(1, 4)),)


@st.composite
def _activity_normalization(draw):
    """ActivityRegularization (l1, l2) on a Dense's input and output (its penalty reaches the weights);
    Normalization (axis -1 or all, constant statistics, invert) before a Dense."""
    if draw(st.booleans()):
        config = dict(l1=draw(st.sampled_from([0.0, 0.01, 0.1])), l2=draw(st.sampled_from([0.0, 0.02, 0.2])))
        return [_layer("ActivityRegularization", **config),
                _layer("Dense", units=draw(st.integers(1, 4)), activation="tanh"),
                _layer("ActivityRegularization", **config)], (draw(st.integers(1, 4)),)
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    per_feature = draw(st.booleans())
    n = shape[-1] if per_feature else None
    mean = draw(st.lists(st.floats(-2, 2), min_size=n, max_size=n) if n else st.floats(-2, 2))
    variance = draw(st.lists(st.floats(0.01, 4), min_size=n, max_size=n) if n else st.floats(0.01, 4))
    config = dict(axis=-1 if per_feature else None, mean=mean, variance=variance, invert=draw(st.booleans()))
    return [_layer("Normalization", **config), _layer("Dense", units=2)], shape


STRATEGIES.update({"GaussianNoise/GaussianDropout": _noise,
                   "ActivityRegularization/Normalization": _activity_normalization})

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


def build_model(case: Case):
    """The case's model: ``Input(input_shape)`` followed by its layers, or its graph."""
    from polykeras.models import Sequential

    if "graph" in case:
        return build_graph(case["graph"])
    dtype = "int32" if case["vocab"] else None
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, *case["input_shape"]], "dtype": dtype}}]
    return Sequential.from_config({"name": "case", "layers": layers + case["layers"]})


def build_graph(graph: dict):
    """A functional model from a graph case: ``Input`` per shape, each node's layer
    (deserialised, or an earlier node's layer called again) on its inbound."""
    from polykeras.layers import Input, deserialize
    from polykeras.models import Model

    values = {f"in{k}": Input(shape=tuple(shape), name=f"in{k}") for k, shape in enumerate(graph["inputs"])}

    def value(ref: str):  # "n<i>:<j>": tensor j of a call of several outputs (return_state)
        name, _, index = ref.partition(":")
        return values[name][int(index)] if index else values[name]

    layers = []
    for i, node in enumerate(graph["nodes"]):
        layer = layers[int(node["layer"][1:])] if isinstance(node["layer"], str) else deserialize(node["layer"])
        layers.append(layer)
        args = [value(name) for name in node["inbound"]]
        if not args:  # a node without inputs (a constant, a weight's read), as a saved model's graph rebuilds it
            values[f"n{i}"] = layer._call_symbolically([], several=True)
            continue
        if node.get("initial_state"):
            values[f"n{i}"] = layer(args[0], initial_state=[value(r) for r in node["initial_state"]])
            continue
        values[f"n{i}"] = layer(args if getattr(layer, "multiple_inputs", False) else args[0])
    inputs = [values[f"in{k}"] for k in range(len(graph["inputs"]))]
    return Model(inputs, [values[name] for name in graph["outputs"]], name="case")


def case_data(case: Case, output_shape: tuple, batch: int = 4, seed: int = 0):
    """Inputs and targets for a case (float64; the worker casts them); ``x`` is a list
    of arrays for a graph of several inputs."""
    rng = np.random.default_rng(seed)
    if "graph" in case:
        shapes = case["graph"]["inputs"]
        x = [rng.normal(size=(batch, *shape)) for shape in shapes]
        x = x if len(x) > 1 else x[0]
    else:
        shape = (batch, *case["input_shape"])
        x = (rng.integers(0, case["vocab"], shape) if case["vocab"]
             else rng.normal(size=shape) * case.get("input_scale", 1) + case.get("input_offset", 0))
        if case.get("padded"):
            x = _padded(x, rng)
    if isinstance(output_shape, list):  # several outputs: one target each
        return x, [_target(case["target"], (batch, *shape[1:]), rng) for shape in output_shape]
    return x, _target(case["target"], (batch, *output_shape[1:]), rng)


def _padded(ids: np.ndarray, rng) -> np.ndarray:
    """Ids with id 0 (padding, masked) on the right of even rows, the left of odd rows and between real ids
    of the first row; every row keeps at least one real id."""
    ids = np.where(ids == 0, 1, ids)
    steps = ids.shape[1]
    for i, row in enumerate(ids):
        pad = int(rng.integers(0, steps))
        if pad and i % 2 == 0:
            row[steps - pad:] = 0
        elif pad:
            row[:pad] = 0
    real = np.flatnonzero(ids[0])
    if len(real) >= 3:
        ids[0, real[len(real) // 2]] = 0
    return ids


def _target(target: str, out: tuple, rng):
    if target == "labels":
        y = rng.integers(0, out[-1], out[:-1])
    elif target == "onehot":
        y = np.eye(out[-1])[rng.integers(0, out[-1], out[:-1])]
    elif target == "binary":
        y = (rng.random(out) > 0.5).astype(float)
    elif target == "distribution":  # rows of probabilities, none zero
        e = np.exp(rng.normal(size=out))
        y = e / e.sum(axis=-1, keepdims=True)
    elif target == "counts":
        y = rng.poisson(2.0, size=out).astype(float)
    elif target == "positive":  # away from zero, where percentage errors blow up
        y = rng.uniform(0.5, 2.0, size=out)
    else:
        y = rng.normal(size=out)
    return y
