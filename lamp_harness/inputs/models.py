"""Which concrete model serves each role: model aliases, presets, and the on-disk model cache.

A *role* is a slot a component needs a model for (``generator``, ``contriever``, ``bge``...). The
model for a role is, in order of precedence:

1. what the user gave explicitly (``--model``, ``--retriever-arg model=...``): a registered alias,
   a hub id (``org/name``, optionally ``org/name@revision``), or a local folder;
2. the run's preset (``--preset``): a registered preset maps each role to an alias, hub id or path.

Aliases and presets are registered by plugins (``registry.add_model`` / ``registry.add_preset``);
this module knows no concrete model. An alias may carry:

- ``role``: the role (or a tuple of roles) it can serve;
- ``source``: a hub id, ``package:<distribution>`` or a path (shown by ``lamp models``);
- ``materialize``: ``"module:function"`` returning a local folder (e.g. converting a packaged GGUF
  once); the folder may hold a ``lamp-source.json`` with a ``revision`` field;
- ``status``: ``"module:function"`` returning a short installed/cached status line;
- ``paper_equivalent``: the hub id (or a role -> hub id mapping) the alias stands in for, so a run
  can say that the offline model *substitutes* the paper's one;
- anything else (``size``, ``pooling``, ``normalize``, ``query_prefix``...) is passed through in
  :attr:`ResolvedModel.metadata` for the component that loads the model.

Nothing here imports torch or transformers; ``huggingface_hub`` is imported only inside functions.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from lamp_harness.base.errors import lamp_error
from lamp_harness.base.io import lamp_home

if TYPE_CHECKING:
    from lamp_harness.plugin.contracts import RunContext
    from lamp_harness.plugin.registry import Component, Registry

SOURCE_FILE = "lamp-source.json"
"""Written by materializers into the folders they produce: where the weights came from."""


@dataclass(frozen=True)
class ResolvedModel:
    """The concrete model chosen for a role.

    ``path`` is what to hand to ``from_pretrained``: a local folder, or the hub id itself.
    ``substitutes`` names the paper's model when an offline stand-in was chosen.
    ``metadata`` is the alias's registered metadata (empty for a bare hub id or path).
    """

    role: str
    name: str
    source: str
    path: str
    revision: str | None = None
    substitutes: str | None = None
    alias: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        """Whether :attr:`path` is a folder on this machine (no hub access needed)."""
        return Path(self.path).is_dir()

    def describe(self) -> dict[str, Any]:
        """What a run records about the model in ``config.json``."""
        return {"model": self.name, "source": self.source, "revision": self.revision, "substitutes": self.substitutes}


def model_cache_dir() -> Path:
    """Where converted / materialized models live: ``$LAMP_MODEL_CACHE`` or ``$LAMP_HOME/models``."""
    env = os.environ.get("LAMP_MODEL_CACHE")
    return Path(env).expanduser() if env else lamp_home() / "models"


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from lamp_harness.plugin.registry import host

    return host().registry


def _roles(component: Component) -> tuple[str, ...]:
    role = component.metadata.get("role", ())
    return (role,) if isinstance(role, str) else tuple(role)


def _paper_equivalent(component: Component, role: str) -> str | None:
    value = component.metadata.get("paper_equivalent")
    if isinstance(value, Mapping):
        return value.get(role)
    return value or None


def _alias(registry: Registry, name: str) -> Component | None:
    from lamp_harness.plugin.registry import normalize

    if normalize(name) in registry.names("model"):
        return registry.get("model", name)
    return None


def _alias_by_source(registry: Registry, source: str) -> Component | None:
    for component in registry.components("model"):
        if component.metadata.get("source") == source:
            return component
    return None


def _call(spec: str) -> Any:
    import importlib

    module, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj()


def preset_roles(name: str, registry: Registry | None = None) -> dict[str, str]:
    """The role -> model mapping of a registered preset (a one-line error when unknown)."""
    component = _registry(registry).get("preset", name)
    return dict(component.metadata.get("roles", {}))


def preset_generator_args(name: str, registry: Registry | None = None) -> dict[str, str]:
    """The default generator arguments of a registered preset (explicit arguments override them)."""
    component = _registry(registry).get("preset", name)
    return dict(component.metadata.get("generator_args", {}))


def resolve_model(
    role: str,
    context: RunContext,
    explicit: str | None = None,
    *,
    registry: Registry | None = None,
    materialize: bool = True,
) -> ResolvedModel:
    """The concrete model for ``role``: ``explicit`` (alias, hub id or local path) if given, else
    what ``context.preset`` maps the role to.

    Aliases with a ``materialize`` callable are materialized here (e.g. converted once into
    :func:`model_cache_dir`) unless ``materialize=False``. When the preset picks a stand-in for the
    paper's model, the substitution is noted on ``context`` for the console.
    """
    reg = _registry(registry)
    from_preset = not explicit
    if explicit:
        name = explicit.strip()
    else:
        roles = preset_roles(context.preset, reg)
        if role not in roles:
            raise lamp_error(
                f"preset {context.preset!r} names no model for the role {role!r}",
                fix=f"Give the model explicitly, or use a preset that covers {role!r} (see `lamp models`).",
            )
        name = roles[role]

    component = _alias(reg, name)
    if component is not None:
        resolved = _from_alias(component, role, name, materialize)
    else:
        resolved = _from_path_or_hub(reg, role, name)

    if from_preset and resolved.substitutes:
        alias = resolved.alias or resolved.name
        context.note(f"preset {context.preset!r}: {role} -> {alias} ({resolved.source}) substitutes {resolved.substitutes}")
    return resolved


_SUBSTITUTION = re.compile(
    r"preset '(?P<preset>[^']*)': (?P<role>\S+) -> (?P<model>\S+) \((?P<source>[^)]*)\) "
    r"substitutes (?P<substitutes>\S+)$"
)


def substitution(note: str) -> dict[str, str] | None:
    """The ``preset``, ``role``, ``model``, ``source`` and ``substitutes`` of a preset note written
    by :func:`resolve_model` (``config.json``'s ``preset_notes``), or ``None`` for another note."""
    found = _SUBSTITUTION.match(note)
    return found.groupdict() if found else None


def _from_alias(component: Component, role: str, name: str, materialize: bool) -> ResolvedModel:
    roles = _roles(component)
    if roles and role not in roles:
        raise lamp_error(
            f"model {component.name!r} is a {'/'.join(roles)} model and cannot serve as the {role}",
            fix="Pick another model (see `lamp models`).",
        )
    meta = dict(component.metadata)
    source = str(meta.get("source") or component.name)
    revision = meta.get("revision")
    path = source
    if meta.get("materialize"):
        if materialize:
            path = str(_call(meta["materialize"]))
            recorded = _read_source_file(Path(path))
            revision = recorded.get("revision", revision)
        else:
            path = ""
    elif Path(source).expanduser().is_dir():
        path = str(Path(source).expanduser().resolve())
    elif "@" in source:
        path, _, revision = source.partition("@")
    if revision is None and source.startswith("package:"):
        revision = _package_revision(source.partition(":")[2])
    return ResolvedModel(
        role=role,
        name=name,
        source=source,
        path=path,
        revision=revision,
        substitutes=_paper_equivalent(component, role),
        alias=component.name,
        metadata=meta,
    )


def _from_path_or_hub(reg: Registry, role: str, name: str) -> ResolvedModel:
    local = Path(name).expanduser()
    if local.is_dir():
        recorded = _read_source_file(local)
        return ResolvedModel(
            role=role, name=name, source=str(local.resolve()), path=str(local.resolve()), revision=recorded.get("revision")
        )
    hub_id, _, revision = name.partition("@")
    if hub_id.count("/") != 1 or hub_id.startswith((".", "/", "~")):
        available = ", ".join(reg.names("model")) or "none"
        raise lamp_error(
            f"unknown model {name!r} for the {role}: not a registered alias, not a hub id (org/name), and no such folder",
            fix=f"Use an alias ({available}), a hub id, or a local model folder.",
        )
    known = _alias_by_source(reg, hub_id)
    meta = dict(known.metadata) if known is not None else {}
    return ResolvedModel(
        role=role,
        name=name,
        source=hub_id,
        path=hub_id,
        revision=revision or meta.get("revision"),
        substitutes=_paper_equivalent(known, role) if known is not None else None,
        alias=known.name if known is not None else None,
        metadata=meta,
    )


def _package_revision(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return None


def _read_source_file(folder: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


# -- hub access ------------------------------------------------------------------------------------


def hub_cached(hub_id: str, revision: str | None = None) -> bool:
    """Whether the Hugging Face cache already holds ``hub_id``'s config (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("config.json", "modules.json", "tokenizer_config.json"):
        found = try_to_load_from_cache(hub_id, filename, revision=revision)
        if isinstance(found, str):
            return True
    return False


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("TRANSFORMERS_OFFLINE", ""), os.environ.get("HF_HUB_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except Exception:  # DNS failure, refused, timeout, or a test's socket guard: all "unreachable"
        return False


def unreachable_error(resolved: ResolvedModel, detail: str = "") -> Exception:
    """The one-line error for a hub model that cannot be fetched."""
    reason = f" ({detail})" if detail else ""
    return lamp_error(
        f"model {resolved.source!r} for the {resolved.role} is not on this machine and "
        f"the Hugging Face hub is unreachable{reason}",
        fix="Use `--preset offline` (packaged models), or pass a local model folder.",
    )


def pretrained_kwargs(resolved: ResolvedModel) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained`` that make loading fail fast instead of hanging.

    A local folder needs nothing. A hub id already in the cache loads with ``local_files_only``
    (no network round-trip). A hub id not in the cache raises the one-line unreachable error at
    once when the hub is offline or unreachable; otherwise it is downloaded normally.
    """
    if resolved.is_local:
        return {}
    kwargs: dict[str, Any] = {}
    if resolved.revision:
        kwargs["revision"] = resolved.revision
    if hub_cached(resolved.path, resolved.revision):
        kwargs["local_files_only"] = True
        return kwargs
    if _hub_offline():
        raise unreachable_error(resolved, "offline mode is on")
    if not _hub_reachable():
        raise unreachable_error(resolved)
    return kwargs


def loading_error(resolved: ResolvedModel, exc: BaseException) -> Exception:
    """Turn an ``OSError`` from ``from_pretrained`` into a one-line error naming the model."""
    detail = " ".join(str(exc).split())
    if resolved.is_local:
        return lamp_error(
            f"cannot load the {resolved.role} model from {resolved.path}: {detail[:200]}",
            fix="Check that the folder holds a complete transformers model.",
        )
    return unreachable_error(resolved, detail[:160])


# -- listing (``lamp models``) ---------------------------------------------------------------------


def model_status(component: Component) -> str:
    """A short installed/cached status for an alias, without importing torch."""
    meta = component.metadata
    if meta.get("status"):
        try:
            return str(_call(meta["status"]))
        except Exception as exc:  # a status probe must never break the listing
            return f"unknown ({type(exc).__name__})"
    source = str(meta.get("source") or "")
    if Path(source).expanduser().is_dir():
        return "local folder"
    if source.count("/") == 1:
        try:
            return "cached" if hub_cached(source.partition("@")[0]) else "hub (not downloaded)"
        except Exception:
            return "hub"
    return ""
