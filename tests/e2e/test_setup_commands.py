"""The README's two commands: the first (the newcomer's demo) installs only what the demo needs,
the second (the tests, which CI runs) builds the vLLM virtualenv as well."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def _steps(command: str) -> list[list[str]]:
    return [shlex.split(step) for step in command.split("&&")]


def _script_lines(path: Path) -> list[str]:
    """The script's commands (comments and blank lines dropped)."""
    lines = (REPO / path).read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def test_the_demo_command_does_not_build_the_vllm_environment() -> None:
    demo, _ = _readme_commands()
    assert ["bash", "scripts/setup.sh"] in _steps(demo)
    assert not any("setup-vllm" in " ".join(step) for step in _steps(demo))
    assert not any("setup-vllm" in line or ".venv-vllm" in line for line in _script_lines(Path("scripts/setup.sh")))
    assert not any("LAMP_SKIP_VLLM" in line for line in _script_lines(Path("scripts/setup.sh")))


def test_the_test_command_builds_it_and_ci_runs_exactly_that_command() -> None:
    _, tests = _readme_commands()
    steps = _steps(tests)
    assert steps[:2] == [["bash", "scripts/setup.sh"], ["bash", "scripts/setup-vllm.sh"]]
    assert steps[-1][:2] == [".venv/bin/pytest", "-q"]
    assert _script_lines(Path(".ci/run"))[-1] == tests


def test_the_setup_scripts_parse() -> None:
    for script in ("scripts/setup.sh", "scripts/setup-vllm.sh", ".ci/run"):
        assert subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True).returncode == 0, script
