"""The plugin manager: finds plugins through entry points, once per process.

Besides entry points, ``POLYKERAS_PLUGINS`` may name plugin modules to load
(comma-separated import paths): a way to try a plugin before packaging it,
and how the conformance suite hands test plugins to its worker processes.

A plugin that fails to import does not take polykeras down: its name and
error are kept (:func:`load_failures`) and shown wherever a user would look
for it (``polykeras backends``, the unknown-backend error), while every other
plugin stays usable.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback
from dataclasses import dataclass
from typing import Any

import pluggy

from polykeras import hookspecs

ENTRY_POINT_GROUP = "polykeras"


@dataclass(frozen=True)
class LoadFailure:
    """A plugin whose entry point could not be loaded."""

    name: str
    target: str
    error: str
    details: str


_manager: pluggy.PluginManager | None = None
_failures: list[LoadFailure] = []


def manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with every entry-point plugin loaded."""
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        _load_entry_points(pm)
        _load_env_plugins(pm)
        _manager = pm
    return _manager


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin must not break the others
            _failures.append(LoadFailure(ep.name, ep.value, f"{type(exc).__name__}: {exc}", traceback.format_exc()))


def _load_env_plugins(pm: pluggy.PluginManager) -> None:
    for module in filter(None, (m.strip() for m in os.environ.get("POLYKERAS_PLUGINS", "").split(","))):
        if pm.get_plugin(module) is not None:
            continue
        try:
            plugin = importlib.import_module(module)
            if not pm.is_registered(plugin):  # not already loaded through its entry point
                pm.register(plugin, name=module)
        except Exception as exc:
            _failures.append(LoadFailure(module, f"POLYKERAS_PLUGINS={module}", f"{type(exc).__name__}: {exc}",
                                         traceback.format_exc()))


def register(plugin: Any, name: str | None = None) -> None:
    """Register a plugin object in this process (tests, notebooks, the
    conformance suite's deliberately broken backends)."""
    pm = manager()
    pm.register(plugin, name=name)
    _clear_caches()


def unregister(name: str) -> None:
    pm = manager()
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin)
    _clear_caches()


def load_failures() -> list[LoadFailure]:
    manager()
    return list(_failures)


def _flatten(results) -> list:
    return [item for result in results if result for item in result]


_cache: dict[str, Any] = {}


def _clear_caches() -> None:
    _cache.clear()


def backend_infos() -> list:
    """Every :class:`~polykeras.backends.BackendInfo` that plugins declare."""
    if "backends" not in _cache:
        _cache["backends"] = _flatten(manager().hook.polykeras_backends())
    return _cache["backends"]


def plugin_layers() -> dict[str, type]:
    """Layer classes added by plugins, by kind."""
    if "layers" not in _cache:
        _cache["layers"] = {cls.kind: cls for cls in _flatten(manager().hook.polykeras_layers())}
    return _cache["layers"]


def plugin_datasets() -> dict[str, Any]:
    if "datasets" not in _cache:
        _cache["datasets"] = dict(_flatten(manager().hook.polykeras_datasets()))
    return _cache["datasets"]


def plugin_workloads() -> list:
    if "workloads" not in _cache:
        _cache["workloads"] = _flatten(manager().hook.polykeras_conformance_workloads())
    return _cache["workloads"]


def add_cli_commands(subparsers) -> list[LoadFailure]:
    """Let each plugin add its ``polykeras`` subcommands (the
    ``polykeras_cli_commands`` hook) to ``subparsers``, one plugin at a time: a
    plugin whose hook raises, or that takes a command name already in use,
    loses only its own commands. Returns those failures."""
    failures = []
    for impl in manager().hook.polykeras_cli_commands.get_hookimpls():
        before = dict(subparsers.choices)
        try:
            impl.function(*[{"subparsers": subparsers}[name] for name in impl.argnames])
            taken = sorted(name for name, parser in before.items() if subparsers.choices.get(name) is not parser)
            if taken:  # Python 3.10's argparse replaces a parser silently (3.11 raises): put the first one back
                subparsers.choices.update({name: before[name] for name in taken})
                raise ValueError(f"command name(s) already in use: {', '.join(taken)}")
        except Exception as exc:  # a broken plugin must not break the command line
            for name in set(subparsers.choices) - set(before):  # nor leave half-made commands behind
                del subparsers.choices[name]
            failures.append(LoadFailure(impl.plugin_name, "polykeras_cli_commands", f"{type(exc).__name__}: {exc}",
                                        traceback.format_exc()))
    return failures
