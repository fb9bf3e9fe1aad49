"""The lock is complete: every package in a built virtualenv is pinned, at the installed version, in
the constraints file its setup script installs with (``.venv``: ``constraints.txt`` through
scripts/setup.sh; ``.venv-vllm``: ``constraints-vllm.txt`` through scripts/setup-vllm.sh). A
virtualenv that is not built is skipped."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {".venv": "constraints.txt", ".venv-vllm": "constraints-vllm.txt"}
REFRESH = (
    "refresh the lock with `bash scripts/lock.sh` (it rebuilds both virtualenvs from pyproject.toml, "
    "runs the tests and rewrites constraints.txt and constraints-vllm.txt), or, to pin exactly what "
    "is installed now, `bash scripts/lock.sh --from-venvs`; then commit both files"
)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, str]:
    """``name -> version`` of ``name==version`` lines (the local label, e.g. torch's ``+cpu``, dropped)."""
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[normalize(name)] = version.split("+", 1)[0].strip()
    return found


def differences(installed: dict[str, str], locked: dict[str, str]) -> list[str]:
    problems = [
        f"{name}=={version} is installed but not in the lock"
        for name, version in sorted(installed.items())
        if name not in locked
    ]
    problems += [
        f"{name}: {version} installed, {locked[name]} locked"
        for name, version in sorted(installed.items())
        if name in locked and locked[name] != version
    ]
    return problems


def test_the_comparison_names_unpinned_and_differing_packages() -> None:
    locked = pins(["# comment", "torch==2.13.0", "httpx==0.28.1", "Typing_Extensions==4.12.0"])
    assert locked == {"torch": "2.13.0", "httpx": "0.28.1", "typing-extensions": "4.12.0"}
    installed = pins(["torch==2.13.0+cpu", "httpx==0.27.0", "typing-extensions==4.12.0", "anyio==4.6.0"])
    assert differences(installed, locked) == [
        "anyio==4.6.0 is installed but not in the lock",
        "httpx: 0.27.0 installed, 0.28.1 locked",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("venv", sorted(LOCKS))
def test_every_installed_package_is_locked_at_its_version(venv: str) -> None:
    python = ROOT / venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{venv} is not built here")
    lock = ROOT / LOCKS[venv]
    assert lock.is_file(), f"{LOCKS[venv]} is missing: {REFRESH}"
    frozen = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.splitlines()
    installed = {name: version for name, version in pins(frozen).items() if name != "lamp-harness"}
    assert len(installed) > 20, frozen  # the dependencies, not an empty virtualenv
    problems = differences(installed, pins(lock.read_text(encoding="utf-8").splitlines()))
    assert not problems, (
        f"{venv} differs from {LOCKS[venv]} ({len(problems)}): "
        + "; ".join(problems)
        + f". If pyproject.toml gained or changed a dependency, {REFRESH}."
    )
