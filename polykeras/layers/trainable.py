"""Keras 3's ``trainable`` flag: settable at any time, on a layer or a model, and inherited.

As in Keras 3 (``keras.layers.Layer.trainable``'s setter), setting ``layer.trainable``

* sets the flag of every weight the layer *created* trainable (a weight created non-trainable,
  BatchNormalization's moving statistics, stays non-trainable when the layer is re-enabled);
* sets the flag of every sublayer: a custom layer's variables and the layers it holds, a
  wrapper's wrapped layer (``Bidirectional``, ``TimeDistributed``), a model's layers.

The order of ``weights`` never changes with the flags (a custom layer's variables keep the order
of their creation flags, as Keras's trackers keep theirs). A model reads the flags when it
builds its spec (:meth:`polykeras.models.model.Model._spec`): a change is seen at the next
``fit``/``evaluate``/``compile``, which then compiles a new program, as Keras asks for a
recompile after a change.

``BatchNormalization`` with ``trainable=False`` runs in inference mode even in training (Keras 3:
``if training and self.trainable`` in its ``call``): its spec node carries ``training=False``
(:attr:`polykeras.spec.LayerSpec.training`), which every backend honours.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

#: Bumped by every change of a ``trainable`` flag; a model whose spec was built before the last
#: change builds it again (and keeps the old one if nothing it holds changed).
_changes = itertools.count(1)
version = 0


def changed() -> None:
    global version
    version = next(_changes)


class TrainableFlag:
    """The mixin :class:`polykeras.layers.base.Layer` gets ``trainable`` from.

    ``_weight_specs`` and ``_created_trainable`` (the ``trainable`` argument each weight was
    created with) are the layer's parallel lists.
    """

    _trainable: bool = True

    @property
    def trainable(self) -> bool:
        """Settable: whether the layer's weights train (see the module docstring)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        value = bool(value)
        self._trainable = value
        specs = getattr(self, "_weight_specs", None)
        if specs:
            created = self._created_trainable
            self._weight_specs[:] = [replace(w, trainable=c and value) if w.trainable != (c and value) else w
                                     for w, c in zip(specs, created)]
        for sub in self._sublayers():
            if getattr(sub, "kind", None) == "Variable":
                sub.trainable = value and sub.created_trainable
            else:
                sub.trainable = value
        changed()

    def _sublayers(self) -> list:
        """The layers (and models) whose flags follow this layer's: a custom layer's variables and
        nested layers; a wrapper overrides this with its wrapped layer(s)."""
        if not getattr(self, "_custom_call", lambda: False)():
            return []
        from polykeras.layers.custom import nested_layers

        return list(getattr(self, "_variables", [])) + nested_layers(self)

    def _record_weight(self, spec, created_trainable: bool) -> int:
        """Append a weight spec (its flag already ``created_trainable and self.trainable``); its index."""
        self._weight_specs.append(spec)
        self._created_trainable.append(bool(created_trainable))
        return len(self._weight_specs) - 1

    @property
    def _inference_only(self) -> bool:
        """Whether the layer's calls run in inference mode even in training (spec ``training=False``)."""
        return False
