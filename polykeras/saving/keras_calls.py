"""Reading the calls of a Keras 3 functional config (:mod:`.keras_read`): which entries are
Keras *operations* rather than layers, and which operations only compute the masks Keras's
layers pass on."""

from __future__ import annotations


def is_operation(entry: dict) -> bool:
    return str(entry.get("module") or "").startswith("keras.src.ops")


def entry_name(entry: dict) -> str:
    return entry.get("name") or entry["config"]["name"]


def mask_plumbing(entries: list[dict]) -> set[str]:
    """The operations of a functional config that only compute masks: Keras writes the masks its
    layers pass on (an ``Embedding(mask_zero=True)``'s) as operations (``NotEqual``,
    ``ConvertToTensor``, ...) read through ``mask=`` arguments. polykeras's layers make and pass
    the same masks themselves (:mod:`polykeras.layers.masking`), so these operations and those
    arguments are left out of the rebuilt model."""
    readers: dict[str, list[tuple[str, bool]]] = {}  # producer -> [(consumer, read as a mask)]
    for entry in entries:
        for node in entry.get("inbound_nodes") or []:
            if not isinstance(node, dict):
                continue
            kwargs = node.get("kwargs") or {}
            for value, as_mask in ((node.get("args", []), False), (kwargs.get("mask"), True),
                                   ([v for k, v in kwargs.items() if k != "mask"], False)):
                for leaf in flatten(value):
                    if isinstance(leaf, dict) and leaf.get("class_name") == "__keras_tensor__":
                        readers.setdefault(str(leaf["config"]["keras_history"][0]), []).append(
                            (entry_name(entry), as_mask))
    found: set[str] = set()
    while True:
        more = {entry_name(e) for e in entries if is_operation(e) and entry_name(e) not in found
                and readers.get(entry_name(e)) and all(m or c in found for c, m in readers[entry_name(e)])}
        if not more:
            return found
        found |= more


def flatten(value) -> list:
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in flatten(v)]
    return [value]
