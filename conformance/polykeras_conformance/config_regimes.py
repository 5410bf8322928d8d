"""The regimes the configuration coverage looks for (:mod:`.config_coverage`): branches of a layer's,
loss's, metric's or optimizer's configuration where a porting mistake can hide, each a predicate over one
:class:`~.config_coverage.Use`. Written from how Keras, PyTorch and JAX differ -- padding conventions,
thresholds and their sides, fused vs loop recurrent paths -- and from the survivors of the mutation runs
(``docs/conformance/mutants.md``). Add a regime here and the report counts the cases that reach it; one
that no case reaches is listed as a gap. Options polykeras refuses (a loss ``reduction`` other than
``sum_over_batch_size``, ``ignore_class``, ``data_format='channels_first'``) are not regimes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

CONV = ("Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D")
POOL = ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D")
TRANSPOSE = ("Conv1DTranspose", "Conv2DTranspose")
RNN = ("SimpleRNN", "LSTM", "GRU")
NORM = ("BatchNormalization", "LayerNormalization", "GroupNormalization")
CLIPPING = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Nadam", "Adamax", "Adadelta", "Lion", "Ftrl")


@dataclass(frozen=True)
class Regime:
    family: str
    kinds: tuple[str, ...]
    name: str
    why: str
    test: Callable


def _tuple(value, rank: int) -> tuple:
    if value is None:
        return (None,) * rank
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * rank


def same_padding(use) -> list[int]:
    """Total 'same' padding per spatial axis (Keras/TF rule: the extra row goes after); [] when not 'same'."""
    c, shape = use.config, use.context.get("input_shape")
    if c.get("padding") != "same" or not shape:
        return []
    spatial = shape[1:-1]
    rank = len(spatial)
    kernel = _tuple(c.get("kernel_size", c.get("pool_size")), rank)
    strides = _tuple(c.get("strides"), rank)
    strides = tuple(k if s is None else s for s, k in zip(strides, kernel))  # pooling: strides default to the window
    dilation = _tuple(c.get("dilation_rate", 1), rank)
    totals = []
    for n, k, s, d in zip(spatial, kernel, strides, dilation):
        effective = (k - 1) * d + 1
        totals.append(max((math.ceil(n / s) - 1) * s + effective - n, 0))
    return totals


def _any_above(values, threshold) -> bool:
    return any(v > threshold for v in values)


def _any_below(values, threshold) -> bool:
    return any(v < threshold for v in values)


def _own_backward_layer(config: dict) -> bool:
    """Whether a Bidirectional's backward layer differs from its forward one but for name and direction."""
    def options(entry):
        return {k: v for k, v in entry["config"].items() if k not in ("name", "go_backwards")}

    return "backward_layer" in config and options(config["backward_layer"]) != options(config["layer"])


def _wraps(use) -> str | None:
    """The kind a TimeDistributed wraps."""
    return (use.config.get("layer") or {}).get("class_name")


def _rank(use) -> int:
    return len(use.context.get("input_shape") or ()) - 1


def _is(key: str, value=True) -> Callable:
    """A use whose config sets ``key`` to ``value``."""
    return lambda u: u.config.get(key) == value


def _given(key: str) -> Callable:
    """A use whose config sets ``key`` (to anything but None, 0 or False)."""
    return lambda u: bool(u.config.get(key))


REGIMES: list[Regime] = [
    # -- windows: padding conventions (TF pads the extra row after; torch pads symmetrically)
    *[Regime("layer", kinds, name, why, test) for kinds in (CONV, POOL) for name, why, test in [
        ("padding='valid'", "no padding", _is("padding", "valid")),
        ("padding='same', symmetric", "equal padding both sides", lambda u: any(t and t % 2 == 0 for t in same_padding(u))),
        ("padding='same', asymmetric (odd total)", "the extra row after, as TF; torch's padding='same' "
         "differs", lambda u: any(t % 2 for t in same_padding(u))),
        ("strides > 1", "output size ceil(n/s); window placement",
         lambda u: any(s > 1 for s in _tuple(u.config.get("strides"), 1) if s)),
    ]],
    Regime("layer", ("Conv1D",), "padding='causal'", "left padding only", _is("padding", "causal")),
    Regime("layer", CONV + TRANSPOSE, "dilation_rate > 1", "effective kernel (k-1)*d+1",
           lambda u: any(d > 1 for d in _tuple(u.config.get("dilation_rate", 1), 1) if d)),
    Regime("layer", ("Conv1D", "Conv2D"), "groups > 1", "grouped convolution: kernel split by group",
           lambda u: (u.config.get("groups") or 1) > 1),
    Regime("layer", CONV + TRANSPOSE, "use_bias=False", "no bias weight", _is("use_bias", False)),
    Regime("layer", ("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"),
           "depth_multiplier > 1", "channel order of the multiplied outputs", lambda u: u.config.get("depth_multiplier", 1) > 1),
    Regime("layer", TRANSPOSE, "padding='same'", "output cropping", _is("padding", "same")),
    Regime("layer", TRANSPOSE, "output_padding set", "extra rows after", lambda u: u.config.get("output_padding") is not None),
    Regime("layer", TRANSPOSE, "kernel smaller than the strides", "gaps between windows", lambda u: any(
        k < s for k, s in zip(_tuple(u.config["kernel_size"], 2), _tuple(u.config["strides"], 2)))),
    # -- recurrent paths
    Regime("layer", RNN, "return_sequences=True", "every step's output", _is("return_sequences")),
    Regime("layer", RNN, "return_sequences=False", "the last output only", _is("return_sequences", False)),
    Regime("layer", RNN, "go_backwards, last output", "reversed input", lambda u: u.config.get("go_backwards")
           and not u.config.get("return_sequences")),
    Regime("layer", RNN, "go_backwards with return_sequences", "outputs stay in processing order (Keras does "
           "not flip them back)", lambda u: u.config.get("go_backwards") and u.config.get("return_sequences")),
    Regime("layer", RNN, "dropout > 0", "input masks per step", lambda u: u.config.get("dropout", 0) > 0),
    Regime("layer", RNN, "recurrent_dropout > 0", "the loop path (no fused kernel)",
           lambda u: u.config.get("recurrent_dropout", 0) > 0),
    Regime("layer", RNN, "use_bias=False", "no bias weight", _is("use_bias", False)),
    Regime("layer", RNN, "masked input", "Embedding(mask_zero) upstream: state carried over padding",
           lambda u: u.context.get("masked")),
    Regime("layer", RNN, "one time step", "a loop of length 1", lambda u: (u.context.get("input_shape") or (0, 0))[1] == 1),
    Regime("layer", ("GRU",), "reset_after=True", "Keras 3's default (cuDNN's convention)", _is("reset_after")),
    # -- Bidirectional: the merge, the flip back of the backward sequence, masks in both directions
    *[Regime("layer", ("Bidirectional",), f"merge_mode={mode!r}", why, _is("merge_mode", mode))
      for mode, why in [("concat", "forward features first"), ("sum", "one gradient to both"),
                        ("mul", "each direction's gradient scaled by the other's output"), ("ave", "halved")]],
    Regime("layer", ("Bidirectional",), "return_sequences=True", "the backward outputs flipped back to input order",
           lambda u: u.config["layer"]["config"].get("return_sequences")),
    Regime("layer", ("Bidirectional",), "return_sequences=False", "each direction's last processed step",
           lambda u: not u.config["layer"]["config"].get("return_sequences")),
    Regime("layer", ("Bidirectional",), "a backward_layer of its own", "the backward weights split off by the "
           "forward layer's count, not half", lambda u: _own_backward_layer(u.config)),
    Regime("layer", ("Bidirectional",), "masked input, return_sequences", "zero outputs at masked steps in both "
           "directions, the mask reversed for the backward one",
           lambda u: u.context.get("masked") and u.config["layer"]["config"].get("return_sequences")),
    Regime("layer", ("Bidirectional",), "masked input, last output", "the backward layer starts past right padding",
           lambda u: u.context.get("masked") and not u.config["layer"]["config"].get("return_sequences")),
    # -- TimeDistributed: the time axis folded into the batch and back, per-step dropout masks, the mask passed on
    *[Regime("layer", ("TimeDistributed",), f"wraps {kind}", why, lambda u, kind=kind: _wraps(u) == kind)
      for kind, why in [("Dense", "a kernel shared by every step"), ("Conv2D", "a rank-5 input folded to NHWC"),
                        ("Flatten", "each slice flattened, the time axis kept")]],
    Regime("layer", ("TimeDistributed",), "wraps Dropout, training", "one parity mask per time step, "
           "(batch, time, ...)", lambda u: _wraps(u) == "Dropout" and u.context.get("training")),
    Regime("layer", ("TimeDistributed",), "masked input", "the mask passed on to a recurrent layer",
           lambda u: u.context.get("masked")),
    Regime("layer", ("GRU",), "reset_after=False", "reset gate applied before the recurrent matmul",
           _is("reset_after", False)),
    # -- normalization: modes, weights present or not, statistics
    Regime("layer", ("BatchNormalization",), "training mode", "batch statistics; moving statistics updated",
           lambda u: u.context.get("training")),
    Regime("layer", ("BatchNormalization",), "inference mode", "moving statistics", lambda u: not u.context.get("training")),
    Regime("layer", ("BatchNormalization",), "trainable=False, training", "Keras 3's frozen layer: inference mode in "
           "a training step", lambda u: u.context.get("trainable") is False and u.context.get("training")),
    Regime("layer", NORM, "center=False", "no beta", _is("center", False)),
    Regime("layer", NORM, "scale=False", "no gamma", _is("scale", False)),
    Regime("layer", ("BatchNormalization",), "center=False and scale=False, training", "no trainable weight: "
           "only the moving statistics train", lambda u: u.config.get("center") is False
           and u.config.get("scale") is False and u.context.get("training")),
    Regime("layer", ("BatchNormalization",), "input rank > 2", "statistics over batch and spatial axes",
           lambda u: _rank(u) > 1),
    Regime("layer", ("LayerNormalization",), "rms_scaling=True", "no mean subtracted", _is("rms_scaling")),
    Regime("layer", ("LayerNormalization",), "several axes", "statistics over a set of axes",
           lambda u: isinstance(u.config.get("axis"), list) and len(u.config["axis"]) > 1),
    # configs are read from built layers: groups=-1 is resolved to the number of channels there
    Regime("layer", ("GroupNormalization",), "one group per channel (groups=-1: instance norm)",
           "statistics per channel", lambda u: 1 < u.context["input_shape"][-1] == u.config.get("groups")),
    Regime("layer", ("GroupNormalization",), "groups=1", "statistics over all channels", _is("groups", 1)),
    Regime("layer", ("GroupNormalization",), "1 < groups < channels", "channels split into groups",
           lambda u: (u.config.get("groups") or 1) > 1 and u.context["input_shape"][-1] > u.config["groups"]),
    Regime("layer", ("UnitNormalization",), "norm below 1e-12", "min(rsqrt(sum x^2), 1/eps) clamps",
           lambda u: u.context.get("input_scale", 1) <= 1e-12),
    # -- the rest of the layers
    Regime("layer", ("Dense",), "use_bias=False", "no bias weight", _is("use_bias", False)),
    Regime("layer", ("Dense",), "input rank > 2", "kernel applied on the last axis", lambda u: _rank(u) > 1),
    Regime("layer", ("Dense",), "kernel_regularizer set", "penalty added to the loss", _given("kernel_regularizer")),
    Regime("layer", ("Embedding",), "mask_zero=True", "produces a mask", _is("mask_zero")),
    Regime("layer", ("GlobalAveragePooling1D",), "masked input", "mean over unmasked steps only",
           lambda u: u.context.get("masked")),
    Regime("layer", ("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D"),
           "keepdims=True", "spatial axes kept", _is("keepdims")),
    Regime("layer", ("UpSampling2D",), "interpolation='bilinear'", "half-pixel centres", _is("interpolation", "bilinear")),
    Regime("layer", ("Dropout", "SpatialDropout1D", "SpatialDropout2D"), "training mode", "parity masks applied",
           lambda u: u.context.get("training")),
    Regime("layer", ("Activation",), "softplus above 20", "frameworks switch to the identity there",
           lambda u: u.config.get("activation") == "softplus" and u.context.get("input_offset", 0) >= 20),
    Regime("layer", ("Activation",), "softmax on logits in the hundreds", "no max subtraction overflows",
           lambda u: u.config.get("activation") == "softmax" and u.context.get("input_scale", 1) >= 100),
    # -- losses: options and the two sides of their thresholds
    Regime("loss", ("CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy"),
           "from_logits=True", "log-softmax / log-sigmoid of logits", _is("from_logits")),
    Regime("loss", ("CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy"),
           "from_logits=False", "probabilities clipped to [eps, 1-eps]", _is("from_logits", False)),
    Regime("loss", ("CategoricalCrossentropy", "BinaryCrossentropy"), "label_smoothing > 0",
           "targets mixed with 1/K (CCE) or 1/2 (BCE)", lambda u: u.config.get("label_smoothing", 0) > 0),
    Regime("loss", ("CategoricalCrossentropy",), "probabilities not summing to one", "Keras renormalises them",
           lambda u: not u.config.get("from_logits") and u.context.get("activation") == "sigmoid"),
    Regime("loss", ("CategoricalCrossentropy",), "large logits", "log-softmax without the max shift overflows",
           lambda u: u.config.get("from_logits") and u.context.get("input_scale", 1) >= 100),
    Regime("loss", ("BinaryCrossentropy",), "saturated probabilities", "the clip to [eps, 1-eps] acts",
           lambda u: not u.config.get("from_logits") and u.context.get("input_scale", 1) >= 10),
    Regime("loss", ("Huber",), "delta != 1", "the linear branch's offset", lambda u: u.config.get("delta") != 1.0),
    # -- metrics
    Regime("metric", ("sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy"), "ties at the k-th score",
           "Keras's in_top_k counts ties as in", lambda u: u.context.get("activation") == "relu"),
    Regime("metric", ("binary_accuracy",), "on sigmoid outputs", "threshold 0.5 on probabilities",
           lambda u: u.context.get("activation") == "sigmoid"),
    # -- optimizers: clipping on both sides of its threshold (measured on the reference's trajectory)
    Regime("optimizer", CLIPPING, "clipnorm, a gradient above the threshold", "the gradient is rescaled",
           lambda u: u.config.get("clipnorm") and _any_above(u.context["variable norms"], u.config["clipnorm"])),
    Regime("optimizer", CLIPPING, "clipnorm, a gradient below the threshold", "the gradient is left alone",
           lambda u: u.config.get("clipnorm") and _any_below(u.context["variable norms"], u.config["clipnorm"])),
    Regime("optimizer", CLIPPING, "global_clipnorm, above the threshold", "all gradients rescaled together",
           lambda u: u.config.get("global_clipnorm")
           and _any_above(u.context["global norms"], u.config["global_clipnorm"])),
    Regime("optimizer", CLIPPING, "global_clipnorm, below the threshold", "gradients left alone",
           lambda u: u.config.get("global_clipnorm")
           and _any_below(u.context["global norms"], u.config["global_clipnorm"])),
    Regime("optimizer", CLIPPING, "clipvalue, entries clipped", "entries beyond +-clipvalue cut",
           lambda u: u.config.get("clipvalue") and _any_above(u.context["max abs entries"], u.config["clipvalue"])),
    Regime("optimizer", CLIPPING, "clipvalue, entries within", "small entries left alone",
           lambda u: u.config.get("clipvalue") and _any_below(u.context["min abs entries"], u.config["clipvalue"])),
    Regime("optimizer", CLIPPING, "weight_decay set", "decoupled decay, times the learning rate",
           lambda u: bool(u.config.get("weight_decay"))),
    Regime("optimizer", CLIPPING, "learning rate changed midway", "momentum conventions diverge",
           lambda u: bool(u.context.get("learning_rate_factor"))),
    Regime("optimizer", CLIPPING, "sample weights", "per-sample loss weights over the batch size",
           lambda u: u.context.get("sample_weight")),
    Regime("optimizer", ("SGD", "RMSprop"), "momentum > 0", "velocity slot", lambda u: u.config.get("momentum", 0) > 0),
    Regime("optimizer", ("SGD",), "nesterov=True", "look-ahead update", _is("nesterov")),
    Regime("optimizer", ("SGD",), "momentum with a changed learning rate", "Keras's v = m*v - lr*g vs "
           "torch's v = m*v + g", lambda u: u.config.get("momentum", 0) > 0 and u.context.get("learning_rate_factor")),
    Regime("optimizer", ("Adam", "AdamW"), "amsgrad=True", "max of second moments", _is("amsgrad")),
    Regime("optimizer", ("Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "Nadam", "Adadelta"), "epsilon not "
           "the default", "epsilon placement shows", lambda u: u.config.get("epsilon") not in (None, 1e-7)),
    Regime("optimizer", ("RMSprop",), "centered=True", "mean gradient subtracted", _is("centered")),
    Regime("optimizer", ("Ftrl",), "l1/l2 regularization strengths set", "the proximal step",
           lambda u: bool(u.config.get("l1_regularization_strength") or u.config.get("l2_regularization_strength"))),
]
