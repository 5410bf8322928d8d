"""Hypothesis strategies that draw one L0 layer case per group (:data:`STRATEGIES`): each returns
``(layers, input_shape)`` or ``(layers, input_shape, vocab)`` -- Keras layer configs for a tiny model after
an ``Input`` of that shape (batch axis excluded), ``vocab`` for integer ids (an ``Embedding`` first).
:func:`polykeras_conformance.cases.layer_cases` draws them."""

from __future__ import annotations

from hypothesis import strategies as st

ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "softplus", "swish",
               "exponential", "hard_sigmoid")


def layer_config(class_name: str, **config) -> dict:
    """A Keras layer config, the form every case holds its layers in."""
    return {"class_name": class_name, "config": config}


_layer = layer_config  # the short name the strategies below use


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
    on and a masked GlobalAveragePooling1D); :func:`.case_models.case_data` pads the ids."""
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


@st.composite
def _activation_layers(draw):
    """ReLU (max_value, negative_slope, threshold), LeakyReLU, ELU, Softmax (an axis of a rank-2 input) and
    PReLU (its alpha weight, shared along an axis or not): Keras layers polykeras writes with ops, before a
    Dense (input and weight gradients through them)."""
    kind = draw(st.sampled_from(["ReLU", "LeakyReLU", "ELU", "Softmax", "PReLU"]))
    shape = (draw(st.integers(1, 5)),)
    if kind == "ReLU":
        config = dict(max_value=draw(st.sampled_from([None, 0.5, 6.0])),
                      negative_slope=draw(st.sampled_from([0.0, 0.1])), threshold=draw(st.sampled_from([0.0, 0.2])))
    elif kind == "LeakyReLU":
        config = dict(negative_slope=draw(st.sampled_from([0.01, 0.3])))
    elif kind == "ELU":
        config = dict(alpha=draw(st.sampled_from([0.5, 1.0, 2.0])))
    elif kind == "Softmax":
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        config = dict(axis=draw(st.sampled_from([-1, 1])))
    else:
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        config = dict(alpha_initializer=draw(st.sampled_from(["zeros", "random_uniform"])),
                      shared_axes=draw(st.sampled_from([None, [1]])))
    layers = [_layer(kind, **config), _layer("Dense", units=draw(st.integers(1, 4)))]
    return (layers if len(shape) == 1 else [layers[0], _layer("Flatten"), layers[1]]), shape


#: group: strategy (the group names the case ids' kinds; layer_cases draws them in this order)
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
    "GaussianNoise/GaussianDropout": _noise, "ActivityRegularization/Normalization": _activity_normalization,
    "ReLU/LeakyReLU/ELU/Softmax/PReLU": _activation_layers,
}
