"""Plugin discovery (entry-point group ``lamp_harness``): the plugin host. The registry of
components it fills lives one floor below, in :mod:`lamp_harness.plugin.catalog` (re-exported here).

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

import difflib
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from lamp_harness.base.errors import lamp_error
from lamp_harness.plugin import hookspecs
from lamp_harness.plugin.catalog import KINDS, BrokenPlugin, Component, Registry, check_target, normalize  # noqa: F401  (re-exported)
from lamp_harness.plugin.catalog import one_line as _one_line

GROUP = "lamp_harness"
REPORTERS_ENV = "LAMP_REPORTERS"
"""Comma list of opt-in reporters to enable for every run (as ``lamp run --reporter``)."""


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

            def load(module: Any = module) -> Any:
                return module

            self._add(name, "(in-process)", "", load)
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
                "@hookimpl from lamp_harness"
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
                    fix="Check its hook names against lamp_harness/plugin/hookspecs.py.",
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
