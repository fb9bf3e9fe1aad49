"""One rich progress bar for long work (cells, training, evaluation); a no-op when disabled."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """``with ProgressBar(console, enabled, "label", total, completed, loss="-") as bar:``
    then ``bar.advance(n)`` or ``bar.update(completed, loss="0.12")``. Extra keyword fields become
    columns (``{name} {value}``)."""

    def __init__(self, console: Any, enabled: bool, description: str, total: int, completed: int = 0, **fields: str) -> None:
        self.enabled = enabled
        self._args = (console, description, total, completed, fields)

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            console, description, total, completed, fields = self._args
            extra = [TextColumn(f"{name.replace('_', ' ')} {{task.fields[{name}]}}") for name in fields]
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                *extra,
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self._bar.start()
            columns: dict[str, Any] = dict(fields)  # rich's own keywords are not among them
            self._id = self._bar.add_task(description, total=total, completed=completed, **columns)
        return self

    def advance(self, n: int) -> None:
        """Move the bar ``n`` steps forward."""
        if self.enabled:
            self._bar.advance(self._id, n)

    def update(self, completed: int, **fields: str) -> None:
        """Set the bar's position (and extra fields)."""
        if self.enabled:
            columns: dict[str, Any] = dict(fields)
            self._bar.update(self._id, completed=completed, **columns)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._bar.stop()
