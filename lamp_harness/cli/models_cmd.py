"""``lamp models``: the model aliases and presets, and whether each model is on this machine."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from lamp_harness.cli.root import app
from lamp_harness.plugin.registry import host


@app.command("models")
def models(
    preset: str = typer.Option(
        None, "--preset", help="Show only this preset's mapping (e.g. --preset lamp-paper). Default: every preset."
    ),
) -> None:
    """List model aliases (role, source: hub id or package, installed/cached status, size) and
    presets (which model each role gets). Use an alias or a hub id with --model / --generator, and
    a preset with --preset (default: offline, packaged models only)."""
    from lamp_harness.inputs.models import model_cache_dir, model_status, preset_roles

    registry = host().registry
    console = Console()
    if preset is None:
        table = Table(title="model aliases")
        for column in ("alias", "role", "source", "status", "size", "summary"):
            table.add_column(column, overflow="fold")
        for c in registry.components("model"):
            role = c.metadata.get("role", "")
            role = role if isinstance(role, str) else "/".join(role)
            table.add_row(
                c.name, role, str(c.metadata.get("source", "")), model_status(c), str(c.metadata.get("size", "")), c.summary
            )
        console.print(table)

    presets = [registry.get("preset", preset)] if preset else registry.components("preset")
    table = Table(title="presets (--preset)")
    for column in ("preset", "role", "model", "summary"):
        table.add_column(column, overflow="fold")
    for p in presets:
        for i, (role, model) in enumerate(sorted(preset_roles(p.name, registry).items())):
            table.add_row(p.name if i == 0 else "", role, model, p.summary if i == 0 else "")
    console.print(table)
    console.print(f"Converted models are cached in {model_cache_dir()} (set LAMP_MODEL_CACHE or LAMP_HOME to move it).")
