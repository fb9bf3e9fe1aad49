"""``lamp plugins``: what is installed, who provides it, and what is broken."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from lamp_harness.cli import app
from lamp_harness.registry import host


@app.command("plugins")
def plugins() -> None:
    """List every registered component (kind, name, providing distribution, summary) and every
    broken plugin with its error. Block plugins with LAMP_DISABLE_PLUGINS=a,b; trace hook calls
    with LAMP_TRACE_PLUGINS=1."""
    h = host()
    console = Console()
    table = Table(title="lamp-harness components", show_lines=False)
    for column in ("kind", "name", "provided by", "summary"):
        table.add_column(column, overflow="fold")
    for c in h.registry.components():
        if c.kind in ("model", "preset"):
            continue  # listed by `lamp models`
        name = c.name + (f" ({', '.join(c.aliases)})" if c.aliases else "")
        table.add_row(c.kind.replace("_", " "), name, c.provider, c.summary)
    console.print(table)
    for (kind, name), owners in h.registry.conflicts().items():
        who = " and ".join(o.provider for o in owners)
        console.print(f"[bold red]conflict[/]: {kind} {name!r} is registered by {who}; "
                      "uninstall one or block it with LAMP_DISABLE_PLUGINS")
    for b in h.broken:
        console.print(f"[bold red]broken[/]: {b.name} ({b.distribution} {b.version}): {b.error}",
                      soft_wrap=True)
    for d in h.disabled:
        console.print(f"[yellow]disabled[/] by LAMP_DISABLE_PLUGINS: {d}")
