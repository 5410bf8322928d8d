"""Hook specifications: the whole plugin interface of polykeras.

A plugin is a module (or object) with functions named like the hooks below,
marked with :data:`hookimpl`, made known to polykeras through an entry point
in the ``polykeras`` group::

    # pyproject.toml of a third-party backend
    [project.entry-points.polykeras]
    mybackend = "polykeras_mybackend"

First-party backends (NumPy, PyTorch, JAX, Keras) register exactly this way.
Loading a plugin must be cheap: import the framework lazily (inside
the ``BackendInfo.factory`` it names, and friends), so that ``import polykeras`` and
``polykeras backends`` never pay for it. See ``docs/writing-a-backend.md``.
"""

from __future__ import annotations

import pluggy

PROJECT = "polykeras"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def polykeras_backends():
    """Declare the backends this plugin provides.

    Return a list of :class:`polykeras.backends.BackendInfo`: name, aliases,
    the framework module it needs (checked without importing it), the pip
    extra that installs it, the dtypes and a ``factory(device, dtype)`` (or its
    ``"module:attr"`` name) that returns a :class:`polykeras.program.Backend`.
    Called once per process when polykeras first looks for backends; must not
    import the framework.
    """


@hookspec
def polykeras_layers():
    """Add layer kinds to the API.

    Return a list of :class:`polykeras.layers.Layer` subclasses. Each class's
    ``kind`` (its class name by default) becomes usable in models and in
    ``from_config``; give the class a ``reference_kernel`` attribute (a
    ``polykeras_numpy.layers.base.Kernel`` subclass) so the NumPy reference
    backend -- and through it the conformance suite -- can run it. Other
    backends implement the kind themselves or report it as unsupported.
    """


@hookspec
def polykeras_datasets():
    """Add datasets for ``polykeras train`` and the conformance suite.

    Return a list of ``(name, loader)`` pairs, ``loader()`` returning
    ``(x_train, y_train), (x_test, y_test)`` as NumPy arrays, like
    ``keras.datasets.mnist.load_data()``.
    """


@hookspec
def polykeras_conformance_workloads():
    """Add workloads to ``polykeras train`` and the conformance suite.

    Return a list of workload descriptions (see ``polykeras.workloads``):
    a name, a model builder, a dataset name, an optimizer, a loss and the
    batch size the suite trains them with.
    """
