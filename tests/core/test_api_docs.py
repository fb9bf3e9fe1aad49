"""Every public API of ``lamp_harness`` has a docstring, and the API reference generated from them
(pdoc, in the test extra) builds without a warning."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import lamp_harness


def _undocumented() -> list[str]:
    missing = []
    for info in pkgutil.walk_packages(lamp_harness.__path__, "lamp_harness."):
        module = importlib.import_module(info.name)
        if not (module.__doc__ or "").strip():
            missing.append(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not (obj.__doc__ or "").strip():
                missing.append(f"{info.name}.{name}")
            if not inspect.isclass(obj):
                continue
            for attr, member in vars(obj).items():
                function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                if attr.startswith("_") or not inspect.isfunction(function) or (function.__doc__ or "").strip():
                    continue
                # An override documented by the contract it implements counts as documented.
                if not any((getattr(getattr(base, attr, None), "__doc__", None) or "").strip() for base in obj.__mro__[1:]):
                    missing.append(f"{info.name}.{name}.{attr}")
    return missing


def test_every_public_class_function_and_method_has_a_docstring():
    assert _undocumented() == []


@pytest.mark.slow
def test_the_api_reference_builds_without_warnings(tmp_path):
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "pdoc", "lamp_harness", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "warn" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    contracts = (tmp_path / "lamp_harness" / "contracts.html").read_text(encoding="utf-8")
    assert "GenerationRequest" in contracts and "retrieved" in contracts
    registry = (tmp_path / "lamp_harness" / "registry.html").read_text(encoding="utf-8")
    assert "factory(context, **args)" in registry  # the add_* docstrings: how each factory is called
    assert (tmp_path / "lamp_harness" / "testing.html").is_file()
