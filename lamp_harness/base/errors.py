"""The one exception type for problems a user can fix."""

from __future__ import annotations

from lamp_harness.base.secrets import redact_text

INTERRUPTED = "Interrupted: finished work is saved; run the same command again to resume."
"""The one line of an interrupted command (Ctrl-C, SIGTERM), which exits with code 130."""


class LampError(Exception):
    """A problem the user caused and can fix: bad file, unknown name, missing model, wrong model kind.

    The CLI prints it as one line (no traceback) and exits with code 2. Build the message with
    :func:`lamp_error` so that it always says what was wrong, where, and what to do.
    Bugs are not LampErrors: they still raise normally.
    """

    exit_code = 2


def lamp_error(what: str, *, where: str | None = None, fix: str | None = None) -> LampError:
    """Build a one-line :class:`LampError`: ``WHERE: WHAT. FIX``."""
    text = " ".join(redact_text(what).split())
    if where:
        text = f"{redact_text(where)}: {text}"
    if fix:
        text = f"{text.rstrip('.')}. {' '.join(redact_text(fix).split())}"
    return LampError(text)


def warn(message: str) -> None:
    """One warning line on stderr: a problem the harness repaired by itself (a corrupt cache entry,
    an inconsistent run folder), so the run goes on but the user is told."""
    import sys

    print(f"warning: {' '.join(redact_text(str(message)).split())}", file=sys.stderr)
