"""Installing a plugin distribution the way a user would, for tests: ``pip install`` into a
temporary ``--target`` folder (no network: ``--no-index``; the venv's setuptools:
``--no-build-isolation``), then running ``lamp`` and ``pytest`` in subprocesses that see it
through ``PYTHONPATH``."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from lamp_cli import LAMP_PROCESS, TOYS  # TOYS: the model-free `toy-echo` generator

_counter = itertools.count()


def pip_install(source: Path, root: Path) -> Path:
    """Install the distribution in ``source`` into ``root/site`` and return that folder.

    It is built from a copy: pip builds in place and would leave build/ and *.egg-info behind."""
    copy = root / "src"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    target = root / "site"
    # setuptools>=70.1 (test extra) builds wheels without the separate 'wheel' package.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            str(copy),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def plugin_env(sites: list[Path], home: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that sees the installed ``sites`` and the toy plugins."""
    env = {**os.environ, "LAMP_HOME": str(home), "COLUMNS": "250", "PYTHONDONTWRITEBYTECODE": "1", **extra}
    paths = [*(str(s) for s in sites), str(TOYS), *filter(None, [os.environ.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    for name in ("LAMP_DISABLE_PLUGINS", "LAMP_TRACE_PLUGINS"):
        if name not in extra:
            env.pop(name, None)
    return env


def run_lamp(args: list[str], env: dict[str, str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``lamp ARGS`` in a subprocess (the venv's script, or the module when it is absent)."""
    script = Path(sys.executable).with_name("lamp")
    command = [str(script)] if script.exists() else LAMP_PROCESS
    return subprocess.run([*command, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def run_lamp_into(out: Path, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lamp ARGS --out OUT --quiet`` through :func:`run_lamp`; it must succeed (its output
    is the failure's message)."""
    done = run_lamp([*args, "--out", str(out), "--quiet"], env, cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def cells_with_metrics(out: Path) -> Iterator[tuple[dict, dict]]:
    """Each cell of the run folder ``out``: its ``config.json`` and its ``metrics.json``, read."""
    for path in out.glob("*/config.json"):
        yield (
            json.loads(path.read_text(encoding="utf-8")),
            json.loads((path.parent / "metrics.json").read_text(encoding="utf-8")),
        )


def run_pytest(tests: Path, env: dict[str, str], cwd: Path, rootdir: Path) -> subprocess.CompletedProcess[str]:
    """``pytest TESTS`` in a subprocess, as the distribution's author would run it."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(tests), "-q", "-p", "no:cacheprovider", "-rs", "--rootdir", str(rootdir)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


class FakeSite:
    """A folder on ``sys.path`` holding fake installed distributions and their plugin modules."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add(self, dist: str, version: str = "1.0", **plugins: str) -> dict[str, str]:
        """Install ``dist`` with one entry point per keyword: ``ep_name=module_source``.
        Returns the generated module name of each entry point."""
        names = {}
        lines = []
        for ep_name, source in plugins.items():
            module = f"lamp_fake_{ep_name.replace('-', '_')}_{next(_counter)}"
            (self.root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            self.modules.append(module)
            names[ep_name] = module
            lines.append(f"{ep_name} = {module}")
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
        (info / "entry_points.txt").write_text("[lamp_harness]\n" + "\n".join(lines) + "\n", encoding="utf-8")
        return names

    def set_version(self, dist: str, old: str, new: str) -> None:
        """Upgrade (or downgrade) the installed ``dist`` from version ``old`` to ``new`` in place:
        its dist-info folder and its METADATA, as a ``pip install`` of the new version would."""
        info = self.root / f"{dist.replace('-', '_')}-{old}.dist-info"
        moved = self.root / f"{dist.replace('-', '_')}-{new}.dist-info"
        shutil.move(info, moved)
        metadata = moved / "METADATA"
        text = metadata.read_text(encoding="utf-8")
        metadata.write_text(text.replace(f"Version: {old}", f"Version: {new}"), encoding="utf-8")
