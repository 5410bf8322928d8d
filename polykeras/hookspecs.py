"""Hook specifications: the whole plugin interface of polykeras.

A plugin is a module (or object) with functions named like the hooks below,
marked with :data:`hookimpl`, made known to polykeras through an entry point
in the ``polykeras`` group::

    # pyproject.toml of a third-party backend
    [project.entry-points.polykeras]
    mybackend = "polykeras_mybackend"

First-party backends (NumPy, PyTorch, JAX, Keras) register exactly this way,
and so does the conformance suite, which adds ``polykeras conformance``.
Loading a plugin must be cheap: import the framework lazily (inside
the ``BackendInfo.factory`` it names, and friends), so that ``import polykeras`` and
``polykeras backends`` never pay for it. See ``docs/writing-a-backend.md``.

Data-parallel training needs no hook: the :class:`~polykeras.program.Backend` a
plugin's factory returns may define ``list_devices``, ``distribute`` and
``initialize_distributed`` (see its docstring and ``docs/distribution.md``); a
backend without them is refused by name when a model asks for a distribution.
``replica_launch(replicas)`` (optional) tells the conformance suite's L4 how to
start that many replicas on this machine (processes and environment).
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


@hookspec
def polykeras_cli_commands(subparsers):
    """Add subcommands to the ``polykeras`` command line.

    ``subparsers`` is the :mod:`argparse` object that the ``polykeras``
    parser's ``add_subparsers()`` returned. For each command, call
    ``subparsers.add_parser(name, help=...)``, add the command's options to the
    parser it returns, and name the function that runs the command with
    ``parser.set_defaults(handler=function)``. ``function(args)`` receives the
    parsed :class:`argparse.Namespace` (``args.debug`` included) and returns
    the exit status, 0 for success. Raise :class:`polykeras.cli.UsageError`
    for a mistake in the command line: it is printed as one line and the exit
    status is 2 (:func:`polykeras.cli.check_choice` raises one for a value
    outside a list). Any other exception is printed as one line with status 1,
    with its traceback under ``polykeras --debug``.

    Return nothing. Called every time the ``polykeras`` command starts, so
    keep this cheap: import what the command needs inside ``function``. A
    name already taken (``backends``, ``train``, another plugin's command) is
    refused; a plugin whose hook raises loses its own commands only, and the
    error is printed on stderr. The conformance suite adds ``polykeras
    conformance`` this way (``polykeras_conformance.cli``).
    """
