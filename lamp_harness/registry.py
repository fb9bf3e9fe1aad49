"""Plugin discovery (entry-point group ``lamp_harness``) and the registry of components.

Built-in components are registered exactly like third-party ones. The :class:`PluginHost` is the
typed facade over pluggy that the rest of the code uses; nothing else touches ``pm.hook``.

Environment switches:

- ``LAMP_DISABLE_PLUGINS=name1,name2``: skip plugins by entry-point name or distribution name.
- ``LAMP_TRACE_PLUGINS=1``: print every hook call and its result to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from lamp_harness import hookspecs
from lamp_harness.errors import LampError, lamp_error

GROUP = "lamp_harness"
KINDS = ("task", "retriever", "personalizer", "generator", "data_source", "model", "preset", "reporter")
REPORTERS_ENV = "LAMP_REPORTERS"
"""Comma list of opt-in reporters to enable for every run (as ``lamp run --reporter``)."""


def normalize(name: str) -> str:
    """Registry names are case-insensitive and ``_`` equals ``-`` (``LaMP_3`` is ``lamp-3``)."""
    return name.strip().lower().replace("_", "-")


@dataclass(frozen=True)
class Component:
    """A registered component. ``factory`` is a callable or a lazy ``"module:attr"`` string."""

    kind: str
    name: str
    factory: Any
    summary: str
    plugin: str
    distribution: str
    version: str
    aliases: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        """The factory object, importing its module on first use."""
        if isinstance(self.factory, str):
            module, _, attr = self.factory.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
            return obj
        return self.factory

    @property
    def provider(self) -> str:
        return f"{self.distribution} {self.version}".strip()


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that failed to import, to validate, or to register."""

    name: str
    distribution: str
    version: str
    error: str


class Registry:
    """Where plugins add components. Handed to the ``lamp_register`` hook."""

    def __init__(self) -> None:
        self._components: dict[tuple[str, str], Component] = {}
        self._aliases: dict[tuple[str, str], str] = {}
        self._conflicts: dict[tuple[str, str], list[Component]] = {}
        self._current: tuple[str, str, str] = ("", "", "")

    # -- adding ---------------------------------------------------------------------------------
    def add(self, kind: str, name: str, factory: Any, summary: str = "", *,
            aliases: Iterable[str] = (), **meta: Any) -> None:
        """Register a component of ``kind`` under ``name`` (and optional aliases)."""
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}; expected one of {KINDS}")
        plugin, dist, version = self._current
        component = Component(kind, normalize(name), factory, summary.strip(), plugin, dist,
                              version, tuple(normalize(a) for a in aliases), dict(meta))
        key = (kind, component.name)
        if key in self._components:
            self._conflicts.setdefault(key, [self._components[key]]).append(component)
            return
        self._components[key] = component
        for alias in component.aliases:
            self._aliases.setdefault((kind, alias), component.name)

    def add_task(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        self.add("task", name, factory, summary, **kw)

    def add_retriever(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        self.add("retriever", name, factory, summary, **kw)

    def add_personalizer(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        self.add("personalizer", name, factory, summary, **kw)

    def add_generator(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        self.add("generator", name, factory, summary, **kw)

    def add_data_source(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        self.add("data_source", name, factory, summary, **kw)

    def add_reporter(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        """An opt-in reporter: ``factory()`` returns an object with ``@hookimpl`` lifecycle methods,
        registered for a run only when enabled (``lamp run --reporter NAME``, ``reporter = [...]``
        in a matrix file, or ``LAMP_REPORTERS``). The factory should raise a :class:`LampError`
        with an install hint when its library is missing."""
        self.add("reporter", name, factory, summary, **kw)

    def add_model(self, alias: str, summary: str = "", **meta: Any) -> None:
        """A model alias (role, source, size...) for ``lamp models`` and presets."""
        self.add("model", alias, None, summary, **meta)

    def add_preset(self, name: str, roles: Mapping[str, str], summary: str = "", *,
                   generator_args: Mapping[str, str] | None = None) -> None:
        """A preset: the concrete model (alias, hub id or path) for each role, and default
        generator arguments (e.g. greedy decoding for a CPU preset) that explicit ones override."""
        self.add("preset", name, None, summary, roles=dict(roles),
                 generator_args=dict(generator_args or {}))

    # -- reading --------------------------------------------------------------------------------
    def components(self, kind: str | None = None) -> list[Component]:
        return sorted((c for (k, _), c in self._components.items() if kind in (None, k)),
                      key=lambda c: (KINDS.index(c.kind), c.name))

    def names(self, kind: str) -> list[str]:
        return [c.name for c in self.components(kind)]

    def conflicts(self) -> dict[tuple[str, str], list[Component]]:
        return dict(self._conflicts)

    def get(self, kind: str, name: str) -> Component:
        """The component, or a one-line :class:`LampError` listing what is available."""
        key = normalize(name)
        key = self._aliases.get((kind, key), key)
        if (kind, key) in self._conflicts:
            owners = " and ".join(f"{c.provider} (plugin {c.plugin!r})" for c in self._conflicts[(kind, key)])
            raise lamp_error(
                f"{kind.replace('_', ' ').capitalize()} {key!r} is registered twice, by {owners}",
                fix="Uninstall one of them, or block one with LAMP_DISABLE_PLUGINS=<plugin name>.")
        if (kind, key) not in self._components:
            label = kind.replace("_", " ")
            available = ", ".join(self.names(kind)) or "none"
            raise LampError(f"Unknown {label} {name!r}. Available: {available}")
        return self._components[(kind, key)]

    def create(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """Instantiate a component: ``factory(*args, **kwargs)``."""
        return self.get(kind, name).load()(*args, **kwargs)

    def _registering(self, plugin: str, dist: str, version: str) -> None:
        self._current = (plugin, dist, version)

    def _forget(self, plugin: str, distribution: str) -> None:
        for key in [k for k, c in self._components.items()
                    if (c.plugin, c.distribution) == (plugin, distribution)]:
            del self._components[key]
        # A broken plugin's duplicate must not leave a false conflict behind.
        for key, owners in list(self._conflicts.items()):
            kept = [c for c in owners if (c.plugin, c.distribution) != (plugin, distribution)]
            if len(kept) > 1:
                self._conflicts[key] = kept
                continue
            del self._conflicts[key]
            if kept and key not in self._components:
                self._components[key] = kept[0]
        for key in [k for k, v in self._aliases.items() if (k[0], v) not in self._components]:
            del self._aliases[key]


@dataclass
class LoadedPlugin:
    name: str
    distribution: str
    version: str
    module: Any


class PluginHost:
    """Loads plugins from the entry-point group and exposes the registry and lifecycle hooks."""

    def __init__(self, extra_plugins: Iterable[tuple[str, Any]] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.loaded: list[LoadedPlugin] = []
        self.broken: list[BrokenPlugin] = []
        self.disabled: list[str] = []
        if os.environ.get("LAMP_TRACE_PLUGINS", "").strip() not in ("", "0", "false"):
            self._enable_tracing()
        self._load_entry_points()
        for name, module in extra_plugins:
            self._add(name, "(in-process)", "", lambda m=module: m)
        self._register_all()

    # -- loading --------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        blocked = {normalize(n) for n in os.environ.get("LAMP_DISABLE_PLUGINS", "").split(",") if n.strip()}
        seen: set[str] = set()
        for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: (e.dist.name if e.dist else "", e.name)):
            dist = ep.dist.name if ep.dist else "unknown"
            version = ep.dist.version if ep.dist else ""
            ident = f"{dist}:{ep.name}"
            if ident in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(ident)
            if normalize(ep.name) in blocked or normalize(dist) in blocked:
                self.disabled.append(f"{ep.name} ({dist})")
                continue
            self._add(ep.name, dist, version, ep.load)

    def _add(self, name: str, dist: str, version: str, load: Callable[[], Any]) -> None:
        # Entry-point names are unique only within a distribution ("retrievers" in two of them).
        key = name if self.pm.get_plugin(name) is None else f"{dist}:{name}"
        try:
            module = load()
            self.pm.register(module, name=key)
        except Exception as exc:  # a broken plugin must never break the CLI
            self.broken.append(BrokenPlugin(name, dist, version, _one_line(exc)))
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=key)
            self.broken.append(BrokenPlugin(name, dist, version, _one_line(exc)))
            return
        self.loaded.append(LoadedPlugin(name, dist, version, module))

    def _register_all(self) -> None:
        for plugin in list(self.loaded):
            self.registry._registering(plugin.name, plugin.distribution, plugin.version)
            others = [p.module for p in self.loaded if p is not plugin]
            caller = self.pm.subset_hook_caller("lamp_register", remove_plugins=others)
            try:
                caller(registry=self.registry)
            except Exception as exc:
                self.registry._forget(plugin.name, plugin.distribution)
                self.pm.unregister(plugin.module)
                self.loaded.remove(plugin)
                self.broken.append(BrokenPlugin(plugin.name, plugin.distribution, plugin.version,
                                                _one_line(exc)))
        self.registry._registering("", "", "")

    def _enable_tracing(self) -> None:
        def write(*args: Any) -> None:
            print("[lamp trace]", *args, end="", file=sys.stderr)

        self.pm.trace.root.setwriter(write)
        self.pm.enable_tracing()

    def enable_reporters(self, names: Iterable[str]) -> list[str]:
        """Create the named opt-in reporters and register them for lifecycle hooks (once each);
        returns the names enabled now. Unknown names and missing libraries are one-line errors."""
        enabled = []
        for name in dict.fromkeys(normalize(n) for n in names if n and n.strip()):
            key = f"reporter:{self.registry.get('reporter', name).name}"
            if self.pm.get_plugin(key) is not None:
                continue
            instance = self.registry.create("reporter", name)
            self.pm.register(instance, name=key)
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError as exc:
                self.pm.unregister(name=key)
                raise lamp_error(f"reporter {name!r} implements no known hook ({_one_line(exc)})",
                                 fix="Check its hook names against lamp_harness/hookspecs.py.") from None
            enabled.append(name)
        return enabled

    # -- lifecycle hooks ------------------------------------------------------------------------
    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin; a plugin that raises is disabled, with a warning."""
        trace = self.pm.trace.root.get("hook")  # writes only when LAMP_TRACE_PLUGINS is on
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            args = {k: v for k, v in kwargs.items() if k in impl.argnames}
            trace(f"{hook} -> {impl.plugin_name}", args)
            try:
                impl.function(**args)
            except Exception as exc:
                print(f"warning: plugin {impl.plugin_name!r} failed in {hook} and is disabled for "
                      f"this run: {_one_line(exc)}", file=sys.stderr)
                self.pm.unregister(impl.plugin)
                self.broken.append(BrokenPlugin(impl.plugin_name, "", "", f"{hook}: {_one_line(exc)}"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    origin = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({os.path.basename(origin[0].filename)}:{origin[0].lineno})" if origin else ""
    return f"{type(exc).__name__}: {text}{where}"


_HOST: PluginHost | None = None


def host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost()
    return _HOST


def reset_host(host_: PluginHost | None = None) -> None:
    """Replace (or drop) the process-wide host; tests use it to load in-process plugins."""
    global _HOST
    _HOST = host_
