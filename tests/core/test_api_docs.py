"""Every public API of ``lamp_harness`` has a docstring, and the reference of the plugin API
generated from them (pdoc, in the test extra: ``lamp_harness`` and ``lamp_harness.testing``) builds
without a warning and documents every public name."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys

import pytest

import lamp_harness
import lamp_harness.testing


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
def test_the_api_reference_builds_without_warnings_and_documents_every_public_name(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "pdoc",
            "lamp_harness",
            "lamp_harness.testing",
            "lamp_harness.inputs.metrics",
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "warn" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    api = (tmp_path / "lamp_harness.html").read_text(encoding="utf-8")
    documented = set(re.findall(r'id="(\w+)"', api))
    assert [n for n in lamp_harness.__all__ if n not in documented and n != "metrics"] == []
    assert (tmp_path / "lamp_harness" / "inputs" / "metrics.html").is_file()  # the public metrics module, on its page
    assert "retrieved" in api  # the contracts' docstrings, e.g. GenerationRequest's fields
    assert "factory(context, **args)" in api  # the Registry.add_* docstrings: how each factory is called
    kit = (tmp_path / "lamp_harness" / "testing.html").read_text(encoding="utf-8")
    assert all(f'id="{name}"' in kit for name in lamp_harness.testing.__all__)
