"""Plugin discovery (entry-point group ``lamp_harness``) and the registry of components.

Built-in components are registered exactly like third-party ones. The :class:`PluginHost` is the
typed facade over pluggy that the rest of the code uses; nothing else touches ``pm.hook``.

Environment switches:

- ``LAMP_DISABLE_PLUGINS=name1,name2``: skip plugins by entry-point name or distribution name.
- ``LAMP_TRACE_PLUGINS=1``: print every hook call, the plugin (and distribution) that answers
  it, and its result to stderr.

A plugin that cannot be imported, fails validation, or raises while registering (``SystemExit``
included) is listed as *broken* and every other plugin keeps working. Lazy ``"module:attr"``
factories are checked without importing them (:meth:`Registry.check_targets`, used by
``lamp plugins``) and imported up front by ``lamp run``, so a typo fails before any work, in one
line naming the plugin and its distribution.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    """A registered component. ``factory`` is a callable or a lazy ``"module:attr"`` string.

    ``plugin`` is the entry-point name that registered it, ``distribution`` and ``version`` the
    installed package that provides it; ``metadata`` holds the extra keywords given to
    :meth:`Registry.add`.
    """

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
        """The factory object, importing its module on first use.

        A lazy target that cannot be imported (a typo, a missing dependency, a module that raises)
        is a one-line :class:`LampError` naming the component, its plugin and distribution."""
        if not isinstance(self.factory, str):
            return self.factory
        module, _, attr = self.factory.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001  (SystemExit from a plugin module included)
            raise self.load_error(_one_line(exc)) from None
        return obj

    def load_error(self, problem: str) -> LampError:
        """The one-line error for a factory that cannot be loaded."""
        return lamp_error(
            f"{self.label} cannot be loaded from {self.factory!r}: {problem}",
            where=f"plugin {self.plugin!r} ({self.provider})",
            fix=f"Fix the registration or reinstall {self.distribution}; block it with LAMP_DISABLE_PLUGINS={self.plugin}.",
        )

    def check(self) -> str | None:
        """Why a lazy ``"module:attr"`` factory cannot load, found without importing the module
        (its file is parsed): a missing module or a name the module does not define. ``None``
        when it looks fine, or when the factory is a plain object."""
        if not isinstance(self.factory, str):
            return None
        return check_target(self.factory)

    @property
    def label(self) -> str:
        """``"retriever 'bm25'"``: the kind and name, for messages."""
        return f"{self.kind.replace('_', ' ')} {self.name!r}"

    @property
    def provider(self) -> str:
        """``"distribution version"`` of the installed package that provides the component."""
        return f"{self.distribution} {self.version}".strip()


def check_target(target: str) -> str | None:
    """Why the lazy factory ``"package.module:Attr"`` cannot be loaded, or ``None``.

    The module is located with :func:`importlib.util.find_spec` (which imports only its parent
    packages) and its source is parsed, not executed, so ``lamp plugins`` stays fast and imports
    no heavy library. Names defined conditionally, star imports and a module ``__getattr__`` are
    given the benefit of the doubt."""
    module, sep, attr = target.partition(":")
    if not module or (sep and not attr):
        return f"{target!r} is not of the form 'package.module:Attr'"
    try:
        spec = importlib.util.find_spec(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001  (a parent package failing to import)
        return _one_line(exc)
    if spec is None:
        return f"no module named {module!r}"
    if not attr:
        return None
    names = _defined_names(spec.origin)
    first = attr.split(".")[0]
    if names is None or first in names:
        return None
    close = difflib.get_close_matches(first, sorted(n for n in names if not n.startswith("_")), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"module {module!r} defines no {first!r}{hint}"


_NAMES_CACHE: dict[str, set[str] | None] = {}


def _defined_names(origin: str | None) -> set[str] | None:
    """Top-level names a Python source file defines, or ``None`` when that cannot be told."""
    if origin is None or not origin.endswith(".py"):
        return None
    if origin not in _NAMES_CACHE:
        try:
            tree = ast.parse(open(origin, encoding="utf-8").read(), filename=origin)
        except (OSError, SyntaxError, ValueError):
            _NAMES_CACHE[origin] = None
            return None
        names: set[str] | None = set()

        def visit(body: list[ast.stmt]) -> None:
            nonlocal names
            for node in body:
                if names is None:
                    return
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(node.name)
                    if node.name == "__getattr__":
                        names = None
                elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        for leaf in ast.walk(target):
                            if isinstance(leaf, ast.Name):
                                names.add(leaf.id)
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    for alias in node.names:
                        if alias.name == "*":
                            names = None
                            return
                        names.add(alias.asname or alias.name.split(".")[0])
                elif isinstance(node, ast.If):
                    visit(node.body)
                    visit(node.orelse)
                elif isinstance(node, ast.Try):
                    visit(node.body)
                    for handler in node.handlers:
                        visit(handler.body)
                    visit(node.orelse)
                    visit(node.finalbody)
                elif isinstance(node, (ast.With, ast.For, ast.While)):
                    visit(node.body)

        visit(tree.body)
        _NAMES_CACHE[origin] = names
    return _NAMES_CACHE[origin]


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that failed to import, to validate, or to register (or whose lifecycle hook
    raised during a run). ``provides`` holds ``(kind, name)`` of the components it registered
    before failing: they were dropped, and an unknown-name error names this plugin for them."""

    name: str
    distribution: str
    version: str
    error: str
    provides: tuple[tuple[str, str], ...] = ()

    @property
    def provider(self) -> str:
        """``"distribution version"`` of the package the plugin came from."""
        return f"{self.distribution} {self.version}".strip()

    def might_provide(self, kind: str, name: str) -> bool:
        """Whether this plugin probably provides ``name``: it registered it before failing, or
        its entry-point or distribution name contains it (a plugin that failed to import
        registered nothing we could see)."""
        key = normalize(name)
        if (kind, key) in self.provides:
            return True
        return bool(key) and any(
            key in normalize(n) or normalize(n) in key for n in (self.name, self.distribution) if normalize(n)
        )


class Registry:
    """Where plugins add components. Handed to the ``lamp_register`` hook.

    Every ``add_*`` method takes a registry ``name`` (case-insensitive, ``_`` equals ``-``), a
    ``factory`` and a one-line ``summary`` shown by ``lamp plugins``. The factory is the class
    (or any callable) that builds the component, or better a lazy ``"package.module:Class"``
    string, imported only when the component is used. How each kind's factory is called is in
    the docstring of its ``add_*`` method (and in ``docs/plugins.md``).
    """

    def __init__(self, broken: list[BrokenPlugin] | None = None) -> None:
        self._components: dict[tuple[str, str], Component] = {}
        self._aliases: dict[tuple[str, str], str] = {}
        self._conflicts: dict[tuple[str, str], list[Component]] = {}
        self._current: tuple[str, str, str] = ("", "", "")
        self.broken: list[BrokenPlugin] = broken if broken is not None else []
        """Plugins that failed to load (shared with the :class:`PluginHost`): unknown-name errors
        mention them."""

    # -- adding ---------------------------------------------------------------------------------
    def add(
        self, kind: str, name: str, factory: Any, summary: str = "", *, aliases: Iterable[str] = (), **meta: Any
    ) -> None:
        """Register a component of ``kind`` (one of :data:`KINDS`) under ``name`` and optional
        ``aliases``; extra keywords are kept in :attr:`Component.metadata`. A name registered
        twice (by two plugins) is a conflict: ``lamp plugins`` shows both and using it is an
        error until one is uninstalled or blocked."""
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}; expected one of {KINDS}")
        plugin, dist, version = self._current
        component = Component(
            kind,
            normalize(name),
            factory,
            summary.strip(),
            plugin,
            dist,
            version,
            tuple(normalize(a) for a in aliases),
            dict(meta),
        )
        key = (kind, component.name)
        if key in self._components:
            self._conflicts.setdefault(key, [self._components[key]]).append(component)
            return
        self._components[key] = component
        for alias in component.aliases:
            self._aliases.setdefault((kind, alias), component.name)

    def add_task(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        """Register a :class:`~lamp_harness.contracts.Task`. The factory is called as
        ``factory(**args)`` with the user's ``--task-arg`` strings (none by default, ``factory()``),
        whenever the task is needed (keep it cheap); ``max_new_tokens`` is applied by the harness
        and never passed."""
        self.add("task", name, factory, summary, **kw)

    def add_retriever(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        """Register a :class:`~lamp_harness.contracts.Retriever`. The factory is called as
        ``factory(context, **args)``: ``context`` is the run's
        :class:`~lamp_harness.contracts.RunContext`, ``args`` the user's ``--retriever-arg``
        strings for it (``{"min_len": "4"}``)."""
        self.add("retriever", name, factory, summary, **kw)

    def add_personalizer(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        """Register a :class:`~lamp_harness.contracts.Personalizer`. The factory is called as
        ``factory(context, **args)`` with the user's ``--personalizer-arg`` strings; its class
        attributes (``needs_retriever``, ``trainable``...) are read before it is built."""
        self.add("personalizer", name, factory, summary, **kw)

    def add_generator(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        """Register a :class:`~lamp_harness.contracts.Generator`. The factory is called as
        ``factory(context, **args)`` with the user's ``--generator-arg`` strings; the run-level
        settings (``model``, ``batch_size``, ``num_beams``, ``max_input_tokens``) are on
        ``context.settings`` and are passed as keywords only to factories that declare a
        parameter of that name (see ``docs/plugins.md``)."""
        self.add("generator", name, factory, summary, **kw)

    def add_data_source(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        """Register a :class:`~lamp_harness.data.DataSource`. The factory is called as
        ``factory(context)``; ``--data NAME`` (or ``--data TASK=NAME``) selects it."""
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

    def add_preset(
        self, name: str, roles: Mapping[str, str], summary: str = "", *, generator_args: Mapping[str, str] | None = None
    ) -> None:
        """A preset: the concrete model (alias, hub id or path) for each role, and default
        generator arguments (e.g. greedy decoding for a CPU preset) that explicit ones override."""
        self.add("preset", name, None, summary, roles=dict(roles), generator_args=dict(generator_args or {}))

    # -- reading --------------------------------------------------------------------------------
    def components(self, kind: str | None = None) -> list[Component]:
        """Every registered component (of ``kind``), sorted by kind and name; a conflicting name
        appears once here (see :meth:`conflicts` for every registration)."""
        return sorted(
            (c for (k, _), c in self._components.items() if kind in (None, k)), key=lambda c: (KINDS.index(c.kind), c.name)
        )

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind``, sorted."""
        return [c.name for c in self.components(kind)]

    def conflicts(self) -> dict[tuple[str, str], list[Component]]:
        """``(kind, name)`` registered by more than one plugin, with every registration."""
        return dict(self._conflicts)

    def check_targets(self) -> list[tuple[Component, str]]:
        """Every component (conflicting ones included) whose lazy factory cannot be loaded, with
        the reason, found without importing anything heavy (see :func:`check_target`)."""
        seen = [*self._components.values(), *(c for cs in self._conflicts.values() for c in cs)]
        problems = []
        for component in {id(c): c for c in seen}.values():
            problem = component.check()
            if problem is not None:
                problems.append((component, problem))
        return problems

    def get(self, kind: str, name: str) -> Component:
        """The component, or a one-line :class:`LampError` listing what is available."""
        key = normalize(name)
        key = self._aliases.get((kind, key), key)
        if (kind, key) in self._conflicts:
            owners = " and ".join(f"{c.provider} (plugin {c.plugin!r})" for c in self._conflicts[(kind, key)])
            raise lamp_error(
                f"{kind.replace('_', ' ').capitalize()} {key!r} is registered twice, by {owners}",
                fix="Uninstall one of them, or block one with LAMP_DISABLE_PLUGINS=<plugin name>.",
            )
        if (kind, key) not in self._components:
            label = kind.replace("_", " ")
            available = ", ".join(self.names(kind)) or "none"
            message = f"Unknown {label} {name!r}. Available: {available}"
            if self.broken:
                count = len(self.broken)
                message += f". {count} plugin{'s' if count != 1 else ''} failed to load; see `lamp plugins`"
                likely = [b for b in self.broken if b.might_provide(kind, key)]
                if likely:
                    message += "; " + "; ".join(
                        f"plugin {b.name!r} ({b.provider}) would provide it but is broken: {b.error}" for b in likely
                    )
            raise LampError(message)
        return self._components[(kind, key)]

    def create(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """Instantiate a component: ``factory(*args, **kwargs)``."""
        return self.get(kind, name).load()(*args, **kwargs)

    def provider(self, kind: str, name: str) -> tuple[str, str]:
        """``(distribution, version)`` of the package that provides a registered component."""
        component = self.get(kind, name)
        return component.distribution, component.version

    def _registering(self, plugin: str, dist: str, version: str) -> None:
        self._current = (plugin, dist, version)

    def _forget(self, plugin: str, distribution: str) -> tuple[tuple[str, str], ...]:
        """Drop everything a plugin registered; returns the ``(kind, name)`` it had added."""
        dropped = tuple(k for k, c in self._components.items() if (c.plugin, c.distribution) == (plugin, distribution))
        dropped += tuple(
            k
            for k, cs in self._conflicts.items()
            if any((c.plugin, c.distribution) == (plugin, distribution) for c in cs) and k not in dropped
        )
        for key in dropped:
            if key in self._components and (self._components[key].plugin, self._components[key].distribution) == (
                plugin,
                distribution,
            ):
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
        return dropped


LIFECYCLE_HOOKS = (
    "lamp_run_started",
    "lamp_cell_started",
    "lamp_example_predicted",
    "lamp_cell_finished",
    "lamp_run_finished",
)
"""The run lifecycle hooks: a plugin implementing any of them is a *reporter*."""


@dataclass
class LoadedPlugin:
    """A plugin that loaded and registered: its entry-point name, distribution, version, the
    loaded module (or object) and the names of the hooks it implements."""

    name: str
    distribution: str
    version: str
    module: Any
    hooks: tuple[str, ...] = ()

    @property
    def provider(self) -> str:
        """``"distribution version"`` of the package the plugin came from."""
        return f"{self.distribution} {self.version}".strip()

    @property
    def is_reporter(self) -> bool:
        """Whether the plugin implements a lifecycle hook (it follows runs)."""
        return any(h in LIFECYCLE_HOOKS for h in self.hooks)

    @property
    def summary(self) -> str:
        """The first line of the plugin module's (or object's) docstring."""
        doc = getattr(self.module, "__doc__", None) or ""
        return doc.strip().splitlines()[0].strip() if doc.strip() else ""


class PluginHost:
    """Loads plugins from the entry-point group and exposes the registry and lifecycle hooks.

    ``loaded`` lists the working plugins, ``broken`` those that failed (with the error),
    ``disabled`` those blocked by ``LAMP_DISABLE_PLUGINS`` and ``warnings`` problems that do not
    stop a plugin from loading (a hook-named function without ``@hookimpl``). ``extra_plugins``
    are ``(name, module_or_object)`` pairs loaded in-process, as tests and notebooks do.
    """

    def __init__(self, extra_plugins: Iterable[tuple[str, Any]] = (), *, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.loaded: list[LoadedPlugin] = []
        self.broken: list[BrokenPlugin] = []
        self.registry = Registry(self.broken)
        self.disabled: list[str] = []
        self.warnings: list[str] = []
        self._owners: dict[str, tuple[str, str, str]] = {}  # pluggy name -> (name, dist, version)
        self.tracing = os.environ.get("LAMP_TRACE_PLUGINS", "").strip().lower() not in ("", "0", "false", "no")
        if self.tracing:
            self.pm.add_hookcall_monitoring(self._trace_before, self._trace_after)
        if entry_points:  # off: only ``extra_plugins`` (the conformance kit checks one reporter alone)
            self._load_entry_points()
        for name, module in extra_plugins:
            self._add(name, "(in-process)", "", lambda m=module: m)
        self._register_all()

    @property
    def spec_names(self) -> list[str]:
        """The names of every hook a plugin may implement."""
        return sorted(n for n in dir(hookspecs) if n.startswith("lamp_") and callable(getattr(hookspecs, n)))

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
            self._check_undecorated(name, dist, version, module)
            self.pm.register(module, name=key)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001  a broken plugin (even sys.exit()) never breaks the CLI
            self.broken.append(BrokenPlugin(name, dist, version, _one_line(exc)))
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=key)
            self.broken.append(BrokenPlugin(name, dist, version, _one_line(exc) + self._did_you_mean(module)))
            return
        self._owners[key] = (name, dist, version)
        hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(module) or ()))
        self.loaded.append(LoadedPlugin(name, dist, version, module, hooks))

    def _did_you_mean(self, module: Any) -> str:
        """``" (did you mean 'lamp_register'?)"`` for a misspelled hook implementation."""
        hints = []
        for attr in dir(module):
            if attr in self.spec_names or self.pm.parse_hookimpl_opts(module, attr) is None:
                continue
            close = difflib.get_close_matches(attr, self.spec_names, n=1, cutoff=0.6)
            if close:
                hints.append(f"did you mean {close[0]!r} instead of {attr!r}?")
        return f" ({'; '.join(hints)})" if hints else ""

    def _check_undecorated(self, name: str, dist: str, version: str, module: Any) -> None:
        """Warn about functions named like a hook (or nearly) that lack ``@hookimpl``: pluggy
        would silently ignore them."""
        for attr in dir(module):
            if not attr.startswith("lamp_"):
                continue
            value = getattr(module, attr, None)
            if not callable(value) or isinstance(value, type):
                continue
            if self.pm.parse_hookimpl_opts(module, attr) is not None:
                continue
            close = difflib.get_close_matches(attr, self.spec_names, n=1, cutoff=0.8)
            if not close:
                continue
            self.warnings.append(
                f"plugin {name!r} ({f'{dist} {version}'.strip()}): function {attr!r} looks like the "
                f"{close[0]!r} hook but has no @hookimpl, so it is never called; decorate it with "
                "@hookimpl from lamp_harness.hookspecs"
            )

    def _register_all(self) -> None:
        for plugin in list(self.loaded):
            self.registry._registering(plugin.name, plugin.distribution, plugin.version)
            others = [p.module for p in self.loaded if p is not plugin]
            caller = self.pm.subset_hook_caller("lamp_register", remove_plugins=others)
            try:
                caller(registry=self.registry)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001  SystemExit from a plugin included
                dropped = self.registry._forget(plugin.name, plugin.distribution)
                self.pm.unregister(plugin.module)
                self.loaded.remove(plugin)
                self.broken.append(BrokenPlugin(plugin.name, plugin.distribution, plugin.version, _one_line(exc), dropped))
        self.registry._registering("", "", "")

    def plugin_label(self, key: str) -> str:
        """``"name (distribution version)"`` for a plugin's pluggy name, for traces and warnings."""
        name, dist, version = self._owners.get(key, (key, "", ""))
        provider = f"{dist} {version}".strip()
        if provider.startswith("("):
            return f"{name} {provider}"
        return f"{name} ({provider})" if provider else name

    def check_components(self, wanted: Iterable[tuple[str, str]]) -> None:
        """Import the factory of every ``(kind, name)`` now: a typo in a lazy target or a missing
        dependency fails up front, in one line naming the plugin and its distribution
        (``lamp run`` calls this before the first cell)."""
        for kind, name in dict.fromkeys(wanted):
            self.registry.get(kind, name).load()

    # -- tracing --------------------------------------------------------------------------------
    def _trace(self, text: str) -> None:
        if self.tracing:
            print(f"[lamp trace] {text}", file=sys.stderr)

    def _trace_before(self, hook: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        who = ", ".join(self.plugin_label(i.plugin_name) for i in reversed(impls)) or "no plugin"
        self._trace(f"{hook} -> {who} {_short(kwargs)}")

    def _trace_after(self, outcome: Any, hook: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        who = ", ".join(self.plugin_label(i.plugin_name) for i in reversed(impls)) or "no plugin"
        error = outcome.exception
        self._trace(f"{hook} <- {who}: " + (f"raised {_one_line(error)}" if error else "ok"))

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
                raise lamp_error(
                    f"reporter {name!r} implements no known hook ({_one_line(exc)})",
                    fix="Check its hook names against lamp_harness/hookspecs.py.",
                ) from None
            enabled.append(name)
        return enabled

    # -- lifecycle hooks ------------------------------------------------------------------------
    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin; a plugin that raises is disabled, with a warning."""
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            args = {k: v for k, v in kwargs.items() if k in impl.argnames}
            self._trace(f"{hook} -> {self.plugin_label(impl.plugin_name)} {_short(args)}")
            try:
                impl.function(**args)
            except KeyboardInterrupt:
                raise
            except OSError as exc:
                import errno

                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise  # a full disk is the run's, not the plugin's: one line naming the path, work kept
                self._disable(impl, hook, exc)
            except BaseException as exc:  # noqa: BLE001  SystemExit from a reporter too: it never ends the run
                self._disable(impl, hook, exc)

    def _disable(self, impl: Any, hook: str, exc: BaseException) -> None:
        """Unregister the plugin behind ``impl`` for the rest of the run, with a warning."""
        name, dist, version = self._owners.get(impl.plugin_name, (impl.plugin_name, "", ""))
        provider = f" ({dist} {version})".rstrip() if dist and not dist.startswith("(") else ""
        print(
            f"warning: plugin {name!r}{provider.replace(' )', ')')} failed in {hook} and is "
            f"disabled for this run: {_one_line(exc)}",
            file=sys.stderr,
        )
        self.pm.unregister(impl.plugin)
        self.broken.append(BrokenPlugin(name, dist, version, f"{hook}: {_one_line(exc)}"))


def _short(kwargs: Mapping[str, Any]) -> str:
    """Hook arguments for a trace line, each cut to a readable length."""
    parts = []
    for key, value in kwargs.items():
        text = " ".join(repr(value).split())
        parts.append(f"{key}={text[:60] + '...' if len(text) > 60 else text}")
    return "(" + ", ".join(parts) + ")"


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
