"""The L0 op cases of the ops read through another op (``op_cases_indirect``): every op with a tensor
argument has a case, and the drawn cases can tell a wrong op from the right one -- their masks and
indices are mixed, a comparison's quick-mode case tells it from its tie-partner (``greater`` from
``greater_equal``), and no mask changes between float64 and float32."""

import numpy as np
import pytest

import polykeras as keras
from polykeras import ops
from polykeras.layers.operation import op_params, resolve_args
from polykeras.ops.registry import REGISTRY
from polykeras_conformance import cases, op_cases
from polykeras_conformance.op_cases_indirect import GROUPS, ON_WEIGHTS

PARTNER = {"greater": "greater_equal", "greater_equal": "greater", "less": "less_equal", "less_equal": "less",
           "equal": "not_equal", "not_equal": "equal", "logical_and": "logical_or", "logical_or": "logical_and",
           "any": "all", "all": "any"}
ORDERINGS = ("greater", "greater_equal", "less", "less_equal")  # draws against an input or a constant: no ties
INDIRECT = [name for names in GROUPS.values() for name in names] + ON_WEIGHTS


def test_every_op_with_a_tensor_argument_has_a_case():
    cased = {name for names in op_cases.GROUPS.values() for name in names}
    assert set(REGISTRY) - cased == set(op_cases.HOST_ONLY)
    assert all(REGISTRY[name].tensors == () for name in op_cases.HOST_ONLY)
    assert all(op_cases.without_case(name, False).startswith("takes no tensor") for name in op_cases.HOST_ONLY)


def test_a_creation_op_in_a_model_is_a_constant_not_a_node():
    """What ``without_case`` says of ``arange`` and friends."""
    x = keras.Input((3,))
    model = keras.Model(x, ops.add(x, ops.arange(3)) * ops.ones((3,)))
    nodes = [layer.config for layer in model._spec().layers if layer.kind == "Operation"]
    assert [n["op"] for n in nodes] == ["add", "multiply"]
    assert nodes[0]["args"][1]["constant"] == [0, 1, 2] and nodes[1]["args"][1]["constant"] == [1.0, 1.0, 1.0]


def _evaluate(graph: dict, dtype: str, swap: dict | None = None) -> dict[str, np.ndarray]:
    """Every node's value by the registry's NumPy forwards on the suite's data for the case (``swap``: ops
    replaced by others, a planted bug); weights read as a rebuilt graph has them, zeros."""
    x, _ = cases.case_data({"graph": graph, "target": "real"}, (None, 1))
    values = {f"in{k}": a.astype(dtype) for k, a in enumerate(x if isinstance(x, list) else [x])}
    for i, node in enumerate(graph["nodes"]):
        config = node["layer"]["config"]
        if node["layer"]["class_name"] == "Variable":
            values[f"n{i}"] = np.zeros(config["shape"], dtype)
            continue
        arrays = [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                  for a in resolve_args(config["args"], [values[name] for name in node["inbound"]])]
        op = REGISTRY[(swap or {}).get(config["op"], config["op"])]
        values[f"n{i}"] = np.asarray(op.forward(*arrays, **op_params(config["params"], dtype)))
    return values


def _drawn(quick: bool) -> list[dict]:
    return [c for c in op_cases.op_cases(1 if quick else 3, cases._draw)
            if c["id"].removeprefix("op:").split("#")[0] in INDIRECT]


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_masks_and_indices_are_mixed_and_the_same_in_both_dtypes(quick):
    """The op's own boolean or integer result takes more than one value (a constant mask or index could
    not tell a wrong op from the right one), and no mask or index of the case flips in float32."""
    for case in _drawn(quick):
        name = case["id"].removeprefix("op:").split("#")[0]
        wide, narrow = _evaluate(case["graph"], "float64"), _evaluate(case["graph"], "float32")
        for i, node in enumerate(case["graph"]["nodes"]):
            value = wide[f"n{i}"]
            if value.dtype.kind not in "biu":
                continue
            if node["layer"]["config"].get("op") == name and name not in ("any", "all"):  # those: the test below
                assert len(np.unique(value)) > 1, (case["id"], f"n{i}", "a constant result tells nothing")
            np.testing.assert_array_equal(value, narrow[f"n{i}"], err_msg=f"{case['id']} n{i} flips in float32")


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_a_comparison_case_tells_it_from_its_partner(quick):
    """Planted as a bug, ``greater`` computed as ``greater_equal`` changes the output of its quick-mode case (the
    ties of x against ``clip(x, lo, hi)``; its later draws, against a second input or a constant, have no
    ties), in both dtypes; so do the other swaps, in every case of ``equal``/``not_equal``, the logical ops
    and ``any``/``all`` (``logical_and`` as ``logical_or``, ``any`` as ``all``, ...)."""
    told = {}
    for case in _drawn(quick):
        name = case["id"].removeprefix("op:").split("#")[0]
        if name in PARTNER:
            for dtype in ("float64", "float32"):
                out = case["graph"]["outputs"][0]
                right, wrong = _evaluate(case["graph"], dtype)[out], _evaluate(case["graph"], dtype, PARTNER)[out]
                told.setdefault((name, dtype), []).append(not np.array_equal(right, wrong))
    # every case of the quick draw (the first); in full mode all but the tie-less draws of the orderings
    for (name, dtype), cases_told in told.items():
        assert all(cases_told) if quick or name not in ORDERINGS else cases_told[0], (name, dtype, cases_told)
