"""``lamp plugins``: what is installed, who provides it, and what is broken; ``lamp plugins show``
lists a component's options; ``lamp plugins new`` writes a ready-to-install plugin distribution."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lamp_harness.base.errors import LampError, lamp_error
from lamp_harness.cli.root import app
from lamp_harness.plugin.registry import KINDS, Component, PluginHost, Registry, host, normalize

plugins_app = typer.Typer(no_args_is_help=False, rich_markup_mode="markdown")
app.add_typer(plugins_app, name="plugins")

_LISTED = tuple(k for k in KINDS if k not in ("model", "preset"))  # models: `lamp models`


@plugins_app.callback(invoke_without_command=True)
def plugins(ctx: typer.Context) -> None:
    """List every plugin (distribution, version, hooks it implements, what it provides), every
    component (tasks, retrievers, personalizers, generators, data sources, reporters) with the
    plugin that provides it, name conflicts, and broken plugins with their error.

    Lazy `module:Class` targets are checked without importing them, so a typo shows here.
    Block plugins with LAMP_DISABLE_PLUGINS=a,b; trace hook calls with LAMP_TRACE_PLUGINS=1.

    `lamp plugins show NAME` lists a component's options (`--retriever-arg`, `--personalizer-arg`,
    `--generator-arg`, `--task-arg` keys). `lamp plugins new NAME --out DIR --kind ...` writes a new
    plugin distribution; the plugin guide is docs/plugins.md.
    """
    if ctx.invoked_subcommand is not None:
        return
    show(host(), Console())


def show(h: PluginHost, console: Console) -> None:
    """Print the plugin and component tables and the problem lines for ``h``."""
    conflicts = h.registry.conflicts()
    provides: dict[tuple[str, str], list[str]] = {}
    for c in h.registry.components():
        for owner in conflicts.get((c.kind, c.name), [c]):
            provides.setdefault((owner.plugin, owner.distribution), []).append(f"{c.kind.replace('_', ' ')} {c.name}")

    table = Table(title="lamp-harness plugins", show_lines=False)
    for column in ("plugin", "distribution", "version", "hooks", "provides"):
        table.add_column(column, overflow="fold")
    for p in sorted(h.loaded, key=lambda p: (p.distribution != "lamp-harness", p.distribution, p.name)):
        what = provides.get((p.name, p.distribution), [])
        if p.is_reporter:
            what.append(f"reporter {p.name}")
        shown = ", ".join(w for w in what if not w.startswith(("model ", "preset ")))
        models = sum(w.startswith(("model ", "preset ")) for w in what)
        if models:
            shown += (", " if shown else "") + f"{models} model alias(es)/preset(s) (see `lamp models`)"
        table.add_row(p.name, p.distribution, p.version, ", ".join(p.hooks), shown)
    console.print(table)

    table = Table(title="lamp-harness components", show_lines=False)
    for column in ("kind", "name", "provided by", "summary"):
        table.add_column(column, overflow="fold")
    for c in h.registry.components():
        if c.kind not in _LISTED:
            continue
        for owner in conflicts.get((c.kind, c.name), [c]):
            name = owner.name + (f" ({', '.join(owner.aliases)})" if owner.aliases else "")
            who = f"{owner.provider} ({owner.plugin})"
            if (c.kind, c.name) in conflicts:
                who = f"CONFLICT: {who}"
            table.add_row(c.kind.replace("_", " "), name, who, owner.summary)
    for p in h.loaded:
        if p.is_reporter:
            hooks = ", ".join(x.removeprefix("lamp_") for x in p.hooks if x != "lamp_register")
            table.add_row(
                "reporter", p.name, f"{p.provider} ({p.name})", (p.summary + " " if p.summary else "") + f"(hooks: {hooks})"
            )
    console.print(table)

    for (kind, name), owners in conflicts.items():
        who = " and ".join(o.provider for o in owners)
        console.print(
            f"[bold red]conflict[/]: {kind.replace('_', ' ')} {name!r} is registered by {who}; "
            "uninstall one or block it with LAMP_DISABLE_PLUGINS",
            soft_wrap=True,
        )
    for component, problem in h.registry.check_targets():
        console.print(
            f"[bold red]broken[/]: {component.label} of plugin {component.plugin!r} "
            f"({component.provider}) cannot load {component.factory!r}: {problem}",
            soft_wrap=True,
        )
    for b in h.broken:
        console.print(f"[bold red]broken[/]: {b.name} ({b.provider}): {b.error}", soft_wrap=True)
    for w in h.warnings:
        console.print(f"[yellow]warning[/]: {w}", soft_wrap=True)
    for d in h.disabled:
        console.print(f"[yellow]disabled[/] by LAMP_DISABLE_PLUGINS: {d}")


_OPTION_KINDS = ("task", "retriever", "personalizer", "generator")
_FLAG = {
    "task": "--task-arg",
    "retriever": "--retriever-arg",
    "personalizer": "--personalizer-arg",
    "generator": "--generator-arg",
}


@plugins_app.command("show")
def show_options(
    name: str = typer.Argument(
        None, help="A task, retriever, personalizer or generator, e.g. bm25, pplug, hf. [default: every one]"
    ),
    kind: str = typer.Option(
        None, "--kind", "-k", help="Only this kind: task, retriever, personalizer or generator. [default: every kind]"
    ),
) -> None:
    """List a component's options: name, type, default, allowed values and help; the keys that
    `lamp run --retriever-arg` / `--personalizer-arg` / `--generator-arg` / `--task-arg` take
    (NAME:KEY=VALUE for one component), checked for every cell before a run starts.

    Example: `lamp plugins show bm25`, `lamp plugins show pplug`, `lamp plugins show --kind generator`.
    """
    registry = host().registry
    kinds: tuple[str, ...] = _OPTION_KINDS
    if kind is not None:
        if normalize(kind).replace("-", "_") not in _OPTION_KINDS:
            raise lamp_error(f"--kind {kind!r} is not one of {', '.join(_OPTION_KINDS)}", fix="Pass e.g. --kind retriever.")
        kinds = (normalize(kind).replace("-", "_"),)
    components = _matching(registry, kinds, name)
    console = Console()
    for component in components:
        _print_options(component, console)


def _matching(registry: Registry, kinds: tuple[str, ...], name: str | None) -> list[Component]:
    """The components of ``kinds`` named ``name`` (any alias or spelling), or all of them; an
    unknown name is a one-line error with a did-you-mean."""
    import difflib

    if name is None:
        return [c for k in kinds for c in registry.components(k)]
    found = []
    for k in kinds:
        try:
            found.append(registry.get(k, name))
        except LampError:
            continue
    if not found:
        names = sorted({c.name for k in kinds for c in registry.components(k)})
        close = difflib.get_close_matches(normalize(name), names, n=3, cutoff=0.6)
        raise lamp_error(
            f"no {' or '.join(kinds)} is named {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""),
            fix="`lamp plugins` lists every component.",
        )
    return found


def _print_options(component: Component, console: Console) -> None:
    """One component's header line and options table."""
    from lamp_harness.plugin.options import declared_options, task_option_names

    label = f"{component.kind} {component.name}"
    console.print(f"[bold]{label}[/] ({component.provider}): {component.summary}", soft_wrap=True)
    try:
        factory = component.load()
    except LampError as exc:
        console.print(f"  [bold red]broken[/]: {exc}", soft_wrap=True)
        return
    flag = _FLAG[component.kind]
    declared = declared_options(factory)
    if declared is None and component.kind == "task":
        table = Table(title=f"{flag} options of {label}", title_justify="left")
        table.add_column("option", no_wrap=True)
        table.add_column("default")
        for option in task_option_names(factory):
            budget = f"{getattr(factory, 'max_new_tokens', '')} (the task's generation budget)"
            table.add_row(option, budget if option == "max_new_tokens" else _task_default(factory, option))
        console.print(table)
        return
    if declared is None:
        console.print(
            f"  declares no options table: its {flag} keys are checked when it is built (see its documentation)",
            soft_wrap=True,
        )
        return
    rows = declared.describe()
    if not rows and not declared.passthrough and not declared.prefixes:
        console.print(f"  takes no {flag} options")
        return
    if rows:
        table = Table(title=f"{flag} options of {label}", title_justify="left")
        table.add_column("option", no_wrap=True)
        for column in ("type", "default", "allowed", "help"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(row.name, row.type, row.default, row.allowed, row.help)
        console.print(table)
    if declared.passthrough:
        console.print(f"  and {declared.passthrough}", soft_wrap=True)
    for prefix in declared.prefixes:
        console.print(f"  and {prefix}.KEY=VALUE: an option of its {prefix}, handed on to it", soft_wrap=True)


def _task_default(factory: object, option: str) -> str:
    import inspect

    try:
        default = inspect.signature(factory).parameters[option].default  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return ""
    return "" if default is inspect.Parameter.empty else str(default)


@plugins_app.command("new")
def new(
    name: str = typer.Argument(..., help="Distribution name, e.g. lamp-tfidf (the package becomes lamp_tfidf)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create the distribution in (must not exist or be empty)."),
    kind: list[str] = typer.Option(
        ["retriever"],
        "--kind",
        "-k",
        help="Component kind(s) to include (repeatable or comma list): task, "
        "retriever, personalizer, trainable-personalizer, generator, data-source, "
        "reporter, or all.",
    ),
) -> None:
    """Write a ready plugin distribution: pyproject.toml with the entry point, a module with one
    working component per chosen kind, a README and conformance tests.

    Example: `lamp plugins new lamp-mine --out ./lamp-mine --kind retriever,reporter`, then
    `pip install -e ./lamp-mine && pytest ./lamp-mine/tests`.
    """
    from lamp_harness.plugin.scaffold import scaffold

    written = scaffold(name, out, [k for value in kind for k in value.split(",") if k.strip()])
    console = Console()
    console.print(f"Wrote {len(written)} files to {out}:")
    for path in written:
        console.print(f"  {path.relative_to(out)}")
    console.print(f"Next: pip install -e {out} && pytest {out / 'tests'} && lamp plugins")
