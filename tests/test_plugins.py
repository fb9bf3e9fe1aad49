"""The plugin system: discovery through entry points, isolation of broken plugins, the environment
switches, name conflicts, unknown names, and the fast start-up of ``lamp --help`` / ``lamp plugins``.

Third-party distributions are faked without pip: a ``*.dist-info`` folder with an
``entry_points.txt`` in a temporary directory put on ``sys.path`` is exactly what
``importlib.metadata`` looks for.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lamp_harness import registry as registry_module
from lamp_harness.cli import app, main
from lamp_harness.errors import LampError
from lamp_harness.hookspecs import hookimpl
from lamp_harness.registry import PluginHost, host

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "sentence_transformers", "bm25s")
_counter = itertools.count()


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
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
                                       encoding="utf-8")
        (info / "entry_points.txt").write_text("[lamp_harness]\n" + "\n".join(lines) + "\n",
                                               encoding="utf-8")
        return names


@pytest.fixture
def site(tmp_path, monkeypatch):
    """Fake distributions visible to ``importlib.metadata`` for this test only."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    fake = FakeSite(root)
    yield fake
    for module in fake.modules:
        sys.modules.pop(module, None)


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the real ``lamp`` entry point in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "250")  # rich must not fold names across table lines

    def run(*argv: str) -> tuple[int, str, str]:
        registry_module.reset_host(None)
        capsys.readouterr()
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


def retriever_plugin(*names: str, then_raise: str | None = None) -> str:
    """Source of a plugin module that registers retrievers ``names`` (and may then fail)."""
    adds = "".join(f"    registry.add_retriever({n!r}, 'collections:OrderedDict', 'fake {n}')\n"
                   for n in names)
    fail = f"    raise RuntimeError({then_raise!r})\n" if then_raise else ""
    return ("from lamp_harness.hookspecs import hookimpl\n\n"
            "@hookimpl\n"
            "def lamp_register(registry):\n" + (adds + fail or "    pass\n"))


# ---------------------------------------------------------------------------------------------
# Discovery and broken plugins
# ---------------------------------------------------------------------------------------------


def test_entry_point_plugins_are_discovered_with_their_distribution(site):
    site.add("lamp-good", "1.2.3", good=retriever_plugin("good-ret"))
    component = PluginHost().registry.get("retriever", "good-ret")
    assert (component.distribution, component.version, component.plugin) == ("lamp-good", "1.2.3", "good")
    assert component.summary == "fake good-ret"


def test_plugin_failing_to_import_is_listed_as_broken_and_everything_else_works(site, cli):
    site.add("lamp-broken-import", "0.1", broken="import lamp_missing_dependency_xyz\n")
    site.add("lamp-good", "1.0", good=retriever_plugin("good-ret"))

    h = PluginHost()
    assert [b.name for b in h.broken] == ["broken"]
    assert "ModuleNotFoundError" in h.broken[0].error and "lamp_missing_dependency_xyz" in h.broken[0].error
    assert h.registry.get("retriever", "good-ret").distribution == "lamp-good"
    assert "ipa" in h.registry.names("personalizer")  # the built-ins still load

    code, out, err = cli("plugins")
    assert code == 0, err
    assert "Traceback" not in out + err
    broken_lines = [line for line in out.splitlines() if line.startswith("broken")]
    assert len(broken_lines) == 1
    assert "broken (lamp-broken-import 0.1): ModuleNotFoundError" in broken_lines[0]
    assert "lamp_missing_dependency_xyz" in broken_lines[0]
    assert any("good-ret" in line and "lamp-good 1.0" in line for line in out.splitlines())


def test_plugin_raising_in_lamp_register_is_broken_and_its_partial_components_are_dropped(site, cli):
    site.add("lamp-half", "2.0", half=retriever_plugin("half-ret", then_raise="cannot find my model"))
    site.add("lamp-good", "1.0", good=retriever_plugin("good-ret"))

    h = PluginHost()
    assert [(b.name, b.distribution) for b in h.broken] == [("half", "lamp-half")]
    assert h.broken[0].error.startswith("RuntimeError: cannot find my model (")
    assert "half-ret" not in h.registry.names("retriever")
    assert "good-ret" in h.registry.names("retriever")
    assert "half" not in [p.name for p in h.loaded]

    code, out, err = cli("plugins")
    assert code == 0, err
    assert "broken: half (lamp-half 2.0): RuntimeError: cannot find my model" in out
    assert "half-ret" not in out


def test_broken_plugin_does_not_leave_a_false_conflict_behind(site):
    # "lamp-a" sorts first and registers "twin" fine; "lamp-b" registers "twin" and then fails.
    site.add("lamp-a", "1.0", a=retriever_plugin("twin"))
    site.add("lamp-b", "1.0", b=retriever_plugin("twin", then_raise="boom"))
    h = PluginHost()
    assert [b.name for b in h.broken] == ["b"]
    assert h.registry.conflicts() == {}
    assert h.registry.get("retriever", "twin").distribution == "lamp-a"


def test_hook_implementation_matching_no_spec_is_rejected_at_load(site, cli):
    site.add("lamp-typo", "1.0", typo="""
        from lamp_harness.hookspecs import hookimpl

        @hookimpl
        def lamp_regster(registry):
            registry.add_retriever("never", "collections:OrderedDict")
    """)
    h = PluginHost()
    assert [b.name for b in h.broken] == ["typo"]
    assert "unknown hook 'lamp_regster'" in h.broken[0].error
    assert h.pm.get_plugin("typo") is None
    assert "never" not in h.registry.names("retriever")

    code, out, _ = cli("plugins")
    assert code == 0
    assert "broken: typo (lamp-typo 1.0): PluginValidationError: unknown hook 'lamp_regster'" in out


def test_hook_implementation_with_a_wrong_argument_name_is_rejected(site):
    site.add("lamp-badarg", "1.0", badarg="""
        from lamp_harness.hookspecs import hookimpl

        @hookimpl
        def lamp_register(registy):
            pass
    """)
    h = PluginHost()
    assert [b.name for b in h.broken] == ["badarg"]
    assert "registy" in h.broken[0].error


def test_in_process_plugins_register_like_installed_ones():
    class Plugin:
        @hookimpl
        def lamp_register(self, registry):
            registry.add_retriever("mine", "collections:OrderedDict", "in-process")

    class Broken:
        @hookimpl
        def lamp_register(self, registry):
            raise ValueError("bad config")

    h = PluginHost(extra_plugins=[("mine", Plugin()), ("broken-inline", Broken())])
    assert h.registry.get("retriever", "mine").distribution == "(in-process)"
    assert [(b.name, b.distribution) for b in h.broken] == [("broken-inline", "(in-process)")]
    from collections import OrderedDict

    assert h.registry.create("retriever", "mine") == OrderedDict()


def test_two_distributions_with_the_same_entry_point_name_both_load(site):
    # Entry-point names are only unique within a distribution: "retrievers" is also a built-in one.
    site.add("lamp-third-party", "1.0", retrievers=retriever_plugin("third-ret"))
    h = PluginHost()
    assert h.broken == [], h.broken
    assert h.registry.get("retriever", "third-ret").distribution == "lamp-third-party"
    builtin = [p for p in h.loaded if p.distribution == "lamp-harness" and p.name == "retrievers"]
    assert len(builtin) == 1


def test_third_party_plugin_named_like_a_built_in_breaking_does_not_remove_the_built_in(site):
    site.add("lamp-third-party", "1.0",
             personalizers=retriever_plugin("third-ret", then_raise="broken on purpose"))
    h = PluginHost()
    assert [(b.name, b.distribution) for b in h.broken] == [("personalizers", "lamp-third-party")]
    assert h.registry.get("personalizer", "ipa").distribution == "lamp-harness"
    assert "third-ret" not in h.registry.names("retriever")


def test_failing_lifecycle_hook_disables_only_that_plugin(capsys):
    calls = []

    class Good:
        @hookimpl
        def lamp_run_started(self, run):
            calls.append(("good", run.name))

    class Bad:
        @hookimpl
        def lamp_run_started(self, run):
            raise OSError("disk full")

    h = PluginHost(extra_plugins=[("good-reporter", Good()), ("bad-reporter", Bad())])
    h.notify("lamp_run_started", run=SimpleNamespace(name="r1"))
    h.notify("lamp_run_started", run=SimpleNamespace(name="r2"))
    assert calls == [("good", "r1"), ("good", "r2")]
    err = capsys.readouterr().err
    assert err.count("warning: plugin 'bad-reporter' failed in lamp_run_started") == 1
    assert "OSError: disk full" in err
    assert "bad-reporter" in [b.name for b in h.broken]


# ---------------------------------------------------------------------------------------------
# Environment switches
# ---------------------------------------------------------------------------------------------


def test_lamp_disable_plugins_blocks_by_entry_point_or_distribution_name(site, cli, monkeypatch):
    site.add("lamp-one", "1.0", first=retriever_plugin("one-ret"))
    site.add("Lamp_Two", "1.0", second=retriever_plugin("two-ret"))
    site.add("lamp-three", "1.0", third=retriever_plugin("three-ret"))
    monkeypatch.setenv("LAMP_DISABLE_PLUGINS", "first, lamp-two")

    h = PluginHost()
    names = h.registry.names("retriever")
    assert "one-ret" not in names and "two-ret" not in names and "three-ret" in names
    assert sorted(h.disabled) == ["first (lamp-one)", "second (Lamp_Two)"]

    code, out, _ = cli("plugins")
    assert code == 0
    assert "disabled by LAMP_DISABLE_PLUGINS: first (lamp-one)" in out
    assert "disabled by LAMP_DISABLE_PLUGINS: second (Lamp_Two)" in out
    assert "one-ret" not in out and "three-ret" in out


def test_lamp_disable_plugins_can_block_a_broken_plugin(site, monkeypatch):
    site.add("lamp-broken-import", "0.1", broken="raise ImportError('no gpu driver')\n")
    monkeypatch.setenv("LAMP_DISABLE_PLUGINS", "lamp-broken-import")
    h = PluginHost()
    assert h.broken == []
    assert h.disabled == ["broken (lamp-broken-import)"]


def test_lamp_trace_plugins_prints_hook_calls_to_stderr(site, cli, monkeypatch):
    site.add("lamp-good", "1.0", good=retriever_plugin("good-ret"))
    code, out, err = cli("plugins")
    assert code == 0 and "[lamp trace]" not in out + err

    monkeypatch.setenv("LAMP_TRACE_PLUGINS", "1")
    code, out, err = cli("plugins")
    assert code == 0
    assert "[lamp trace]" in err and "lamp_register" in err
    assert "[lamp trace]" not in out  # stdout stays clean for piping


def test_lamp_trace_plugins_also_traces_lifecycle_hooks(monkeypatch, capsys):
    class Reporter:
        @hookimpl
        def lamp_run_started(self, run):
            pass

    monkeypatch.setenv("LAMP_TRACE_PLUGINS", "1")
    h = PluginHost(extra_plugins=[("my-reporter", Reporter())])
    capsys.readouterr()
    h.notify("lamp_run_started", run=SimpleNamespace(name="r1"))
    err = capsys.readouterr().err
    assert "[lamp trace]" in err and "lamp_run_started -> my-reporter" in err


# ---------------------------------------------------------------------------------------------
# Name conflicts and unknown names
# ---------------------------------------------------------------------------------------------


def test_same_component_name_from_two_distributions_is_a_clear_error(site, cli):
    site.add("lamp-dup-a", "1.0", dupa=retriever_plugin("twin"))
    site.add("lamp-dup-b", "2.0", dupb=retriever_plugin("twin"))

    h = PluginHost()
    with pytest.raises(LampError) as info:
        h.registry.get("retriever", "twin")
    message = str(info.value)
    assert "\n" not in message
    assert "Retriever 'twin' is registered twice" in message
    assert "lamp-dup-a 1.0 (plugin 'dupa')" in message and "lamp-dup-b 2.0 (plugin 'dupb')" in message
    assert "LAMP_DISABLE_PLUGINS" in message

    code, out, _ = cli("plugins")
    assert code == 0
    assert "conflict: retriever 'twin' is registered by lamp-dup-a 1.0 and lamp-dup-b 2.0" in out


def test_blocking_one_side_of_a_conflict_resolves_it(site, monkeypatch):
    site.add("lamp-dup-a", "1.0", dupa=retriever_plugin("twin"))
    site.add("lamp-dup-b", "2.0", dupb=retriever_plugin("twin"))
    monkeypatch.setenv("LAMP_DISABLE_PLUGINS", "dupa")
    assert PluginHost().registry.get("retriever", "twin").distribution == "lamp-dup-b"


def test_unknown_name_lists_what_is_available_in_one_line():
    class Plugin:
        @hookimpl
        def lamp_register(self, registry):
            registry.add_retriever("zeta-ret", "collections:OrderedDict")
            registry.add_retriever("alpha-ret", "collections:OrderedDict", aliases=["a-ret"])

    h = PluginHost(extra_plugins=[("p", Plugin())])
    with pytest.raises(LampError) as info:
        h.registry.get("retriever", "bm52")
    message = str(info.value)
    assert message.startswith("Unknown retriever 'bm52'. Available: ")
    available = message.split("Available: ", 1)[1].split(", ")
    assert available == sorted(available) and {"alpha-ret", "zeta-ret"} <= set(available)
    assert "\n" not in message
    # names are case- and underscore-insensitive, aliases resolve
    assert h.registry.get("retriever", "ALPHA_RET").name == "alpha-ret"
    assert h.registry.get("retriever", "a-ret").name == "alpha-ret"


@pytest.fixture
def probe(monkeypatch):
    """A throwaway ``lamp probe KIND NAME`` command that looks a component up, so that the CLI's
    handling of registry errors is tested whatever commands exist yet."""
    monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))

    @app.command("probe")
    def _probe(kind: str, name: str) -> None:
        print(host().registry.get(kind, name).name)


def test_cli_reports_unknown_and_conflicting_names_in_one_line_with_exit_code_2(site, cli, probe):
    site.add("lamp-dup-a", "1.0", dupa=retriever_plugin("twin"))
    site.add("lamp-dup-b", "2.0", dupb=retriever_plugin("twin", "solo"))

    code, out, err = cli("probe", "retriever", "solo")
    assert (code, out.strip()) == (0, "solo")

    code, out, err = cli("probe", "retriever", "bm52")
    assert code == 2
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("Error: Unknown retriever 'bm52'. Available: ")
    assert "solo" in err

    code, out, err = cli("probe", "retriever", "twin")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "lamp-dup-a 1.0" in err and "lamp-dup-b 2.0" in err


def test_lamp_run_with_an_unknown_or_conflicting_retriever_fails_in_one_line(site, cli, tmp_path):
    site.add("lamp-dup-a", "1.0", dupa=retriever_plugin("twin"))
    site.add("lamp-dup-b", "2.0", dupb=retriever_plugin("twin"))
    base = ("run", "--task", "lamp-7", "--personalizer", "ipa", "--k", "1", "--data", "demo",
            "--limit", "1", "--quiet")
    for name, expected in (("bm52", "Error: Unknown retriever 'bm52'. Available: "),
                           ("twin", "Error: Retriever 'twin' is registered twice, by lamp-dup-a 1.0")):
        out_dir = tmp_path / f"out-{name}"
        code, out, err = cli(*base, "--retriever", name, "--out", str(out_dir))
        assert code == 2, out + err
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(expected), err
        assert not any(out_dir.rglob("predictions.jsonl"))


# ---------------------------------------------------------------------------------------------
# Start-up cost
# ---------------------------------------------------------------------------------------------

_PROBE = """
import sys
from lamp_harness.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, exc.code
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("argv", [["--help"], ["plugins"]], ids=["help", "plugins"])
def test_help_and_plugins_import_no_heavy_library_and_start_fast(argv, tmp_path):
    env = {**os.environ, "LAMP_HOME": str(tmp_path), "COLUMNS": "200"}
    env.pop("LAMP_TRACE_PLUGINS", None)
    probe = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *argv], env=env, check=False,
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().splitlines()[-1] == "HEAVY=", probe.stdout[-300:]
    if argv == ["plugins"]:
        assert "broken" not in probe.stdout, probe.stdout  # the built-ins all load

    script = Path(sys.executable).with_name("lamp")
    command = [str(script)] if script.exists() else [sys.executable, "-c", _PROBE.format(heavy=())]
    timings = []
    for _ in range(2):  # the best of two absorbs a cold file cache on a loaded machine
        start = time.perf_counter()
        done = subprocess.run([*command, *argv], env=env, check=False, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
        timings.append(time.perf_counter() - start)
        assert done.returncode == 0, done.stderr
    print(f"lamp {' '.join(argv)}: {min(timings):.2f} s wall (best of {len(timings)})")
    assert min(timings) < 3.0, f"lamp {' '.join(argv)} took {min(timings):.2f} s"
