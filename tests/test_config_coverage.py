"""Configuration coverage (polykeras_conformance.config_coverage): computed from the case definitions, the
known branches appear on both sides, and a regime no case reaches is listed as a gap."""

import pytest

from polykeras_conformance import config_coverage as cc
from polykeras_conformance.config_regimes import same_padding


@pytest.fixture(scope="module")
def quick_uses():
    return cc.uses(quick=True)


def _reached(rows, kind, name):
    (row,) = [r for r in rows if kind in r.kinds and r.name == name]
    return row.cases


@pytest.mark.parametrize("kind, regime", [
    ("MaxPooling2D", "padding='same', asymmetric (odd total)"), ("MaxPooling2D", "padding='same', symmetric"),
    ("Conv2D", "padding='valid'"), ("LSTM", "go_backwards with return_sequences"), ("GRU", "recurrent_dropout > 0"),
    ("GRU", "reset_after=False"), ("LSTM", "masked input"), ("BatchNormalization", "inference mode"),
    ("CategoricalCrossentropy", "from_logits=True"), ("CategoricalCrossentropy", "label_smoothing > 0"),
    ("BinaryCrossentropy", "saturated probabilities"), ("SGD", "clipnorm, a gradient above the threshold"),
    ("SGD", "clipnorm, a gradient below the threshold"), ("Adam", "global_clipnorm, above the threshold"),
    ("Adam", "global_clipnorm, below the threshold"), ("SGD", "momentum with a changed learning rate"),
    ("sparse_top_k_categorical_accuracy", "ties at the k-th score"),
    # the gaps of the first coverage run, closed by EXTRA_CASES
    ("Conv1D", "padding='causal'"), ("Conv2D", "dilation_rate > 1"), ("Conv2D", "groups > 1"),
    ("LayerNormalization", "several axes"), ("GroupNormalization", "1 < groups < channels"),
    ("TimeDistributed", "wraps Conv2D"), ("TimeDistributed", "wraps Dropout, training"),
    ("TimeDistributed", "masked input"),
])
def test_the_known_branches_are_reached(quick_uses, kind, regime):
    assert _reached(cc.coverage(quick_uses), kind, regime)


def test_clipping_sides_are_measured_on_the_reference_trajectory(quick_uses):
    """The threshold's side comes from the gradients' norms the NumPy reference replays, step by step."""
    clip = {u.case: u.context for u in quick_uses if u.family == "optimizer" and u.config.get("clipnorm")}
    low, high = clip["SGD(learning_rate=0.1, clipnorm=0.1)"], clip["SGD(learning_rate=0.1, clipnorm=10.0)"]
    assert len(low["global norms"]) == 10  # one per step of the L1 case
    assert min(low["variable norms"]) > 0.1 and max(high["variable norms"]) < 10.0


def test_same_padding_is_computed_from_the_window_and_the_input():
    def use(n, k, s):
        return cc.Use("layer", "Conv1D", {"padding": "same", "kernel_size": (k,), "strides": (s,)}, "c",
                      {"input_shape": (None, n, 1)})
    assert same_padding(use(5, 2, 1)) == [1]  # asymmetric: the extra one after
    assert same_padding(use(5, 3, 1)) == [2]  # symmetric
    assert same_padding(use(4, 3, 2)) == [1]  # strides: ceil(4/2) outputs
    assert same_padding(cc.Use("layer", "MaxPooling1D", {"padding": "same", "pool_size": (2,), "strides": None},
                               "c", {"input_shape": (None, 5, 1)})) == [1]  # strides default to the window


def test_a_regime_no_case_reaches_is_a_gap():
    only_valid = [cc.Use("layer", "Conv1D", {"padding": "valid", "kernel_size": (3,), "strides": (1,)}, "c",
                         {"input_shape": (None, 5, 1)})]
    rows = cc.coverage(only_valid)
    assert _reached(rows, "Conv1D", "padding='valid'") == ["c"]
    assert not _reached(rows, "Conv1D", "padding='causal'")
    assert all(r.family == "layer" for r in rows)  # kinds the run does not draw are not listed
    assert "layer Conv1D: padding='causal'" in cc.summary(only_valid)["gaps"]


def test_the_report_section(quick_uses):
    lines = cc.section(quick=True, found=quick_uses)
    text = "\n".join(lines)
    assert "## Configuration coverage" in text and "### Gaps" in text and "### Options drawn with a single value" in text
    assert "| optimizer | " in text and "| loss | " in text and "| layer | " in text
    assert cc.section(quick=True, levels=("L2",)) == []
    table = cc.options(quick_uses)
    assert set(table[("layer", "Conv2D")]["padding"]) == {"valid", "same"}
