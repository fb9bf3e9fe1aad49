"""The catalog of components: the :class:`Registry` that plugins add their tasks, retrievers,
personalizers, generators, data sources, reporters, model aliases and presets to, and the
:class:`Component` entries it holds.

It sits below the plugin host (:mod:`lamp_harness.plugin.registry`, which loads the plugins and calls
their hooks) so that the hook specifications can name :class:`Registry` without an import cycle.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import os
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lamp_harness.base.errors import LampError, lamp_error

KINDS = ("task", "retriever", "personalizer", "generator", "data_source", "model", "preset", "reporter")


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
            raise self.load_error(one_line(exc)) from None
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
        return one_line(exc)
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
        """Register a :class:`~lamp_harness.plugin.contracts.Task`. The factory is called as
        ``factory(**args)`` with the user's ``--task-arg`` strings (none by default, ``factory()``),
        whenever the task is needed (keep it cheap); ``max_new_tokens`` is applied by the harness
        and never passed."""
        self.add("task", name, factory, summary, **kw)

    def add_retriever(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        """Register a :class:`~lamp_harness.plugin.contracts.Retriever`. The factory is called as
        ``factory(context, **args)``: ``context`` is the run's
        :class:`~lamp_harness.plugin.contracts.RunContext`, ``args`` the user's ``--retriever-arg``
        strings for it (``{"min_len": "4"}``)."""
        self.add("retriever", name, factory, summary, **kw)

    def add_personalizer(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        """Register a :class:`~lamp_harness.plugin.contracts.Personalizer`. The factory is called as
        ``factory(context, **args)`` with the user's ``--personalizer-arg`` strings; its class
        attributes (``needs_retriever``, ``trainable``...) are read before it is built."""
        self.add("personalizer", name, factory, summary, **kw)

    def add_generator(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        """Register a :class:`~lamp_harness.plugin.contracts.Generator`. The factory is called as
        ``factory(context, **args)`` with the user's ``--generator-arg`` strings; the run-level
        settings (``model``, ``batch_size``, ``num_beams``, ``max_input_tokens``) are on
        ``context.settings`` and are passed as keywords only to factories that declare a
        parameter of that name (see ``docs/plugins.md``)."""
        self.add("generator", name, factory, summary, **kw)

    def add_data_source(self, name: str, factory: Any, summary: str = "", **kw: Any) -> None:
        """Register a :class:`~lamp_harness.inputs.data.DataSource`. The factory is called as
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


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type, its message and where it was raised (file:line)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    origin = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({os.path.basename(origin[0].filename)}:{origin[0].lineno})" if origin else ""
    return f"{type(exc).__name__}: {text}{where}"
