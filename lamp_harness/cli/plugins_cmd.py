"""``lamp plugins``: what is installed, who provides it, and what is broken; ``lamp plugins new``
writes a ready-to-install plugin distribution."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lamp_harness.cli.root import app
from lamp_harness.registry import KINDS, PluginHost, host

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

    `lamp plugins new NAME --out DIR --kind ...` writes a new plugin distribution; the plugin
    guide is docs/plugins.md.
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
    from lamp_harness.scaffold import scaffold

    written = scaffold(name, out, [k for value in kind for k in value.split(",") if k.strip()])
    console = Console()
    console.print(f"Wrote {len(written)} files to {out}:")
    for path in written:
        console.print(f"  {path.relative_to(out)}")
    console.print(f"Next: pip install -e {out} && pytest {out / 'tests'} && lamp plugins")
