"""`qcsurrogate new-plugin NAME`: what it writes, what it refuses, and that what it writes works.

The generated plugin is imported from its directory (not installed), registered in-process under its
entry point's name, run through the conformance kit and through `qcsurrogate run` on its example
config, and its own tests run in a subprocess (where its conftest.py registers it). CI's `make
scaffold-check` installs one into a venv built from the wheels.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import qcsurrogate
from qcsurrogate import scaffold
from qcsurrogate.cli import main
from qcsurrogate.scaffold import PluginNames
from qcsurrogate.system import ConfigError
from qcsurrogate.testing import check_system

ROOT = Path(__file__).resolve().parents[1]
NAME = "scaffold-probe"  # not a system any test or shipped plugin registers


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("chain-demo", ("chain_demo", "qcsurrogate-chain-demo", "qcsurrogate_chain_demo", "ChainDemoSystem")),
        ("kondo_chain2", ("kondo_chain2", "qcsurrogate-kondo-chain2", "qcsurrogate_kondo_chain2", "KondoChain2System")),
        ("sd", ("sd", "qcsurrogate-sd", "qcsurrogate_sd", "SdSystem")),
        ("Spin-Chain", ("spin_chain", "qcsurrogate-spin-chain", "qcsurrogate_spin_chain", "SpinChainSystem")),
    ],
)
def test_names_are_derived_from_NAME(raw, expected):
    n = PluginNames.from_name(raw)
    assert (n.name, n.dist, n.package, n.cls) == expected
    assert n.params == n.cls.removesuffix("System") + "Params"
    assert n.package.isidentifier() and n.cls.isidentifier()


@pytest.mark.parametrize("bad", ["", "1chain", "ch.ain", "my chain", "a--b", "a_", "-a", "ch@in", "é", "x" * 41])
def test_bad_names_are_refused_and_nothing_is_written(tmp_path, monkeypatch, capsys, bad):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "new-plugin", "--", bad)  # "--": "-a" is a name here, not an option
    assert code == 2 and "qcsurrogate: error: plugin name" in err and out == ""
    assert list(tmp_path.iterdir()) == []


def test_the_qcsurrogate_prefix_is_refused_with_a_hint():
    with pytest.raises(ConfigError, match="without the 'qcsurrogate' prefix .*use 'spin-chain'"):
        PluginNames.from_name("qcsurrogate-spin-chain")


def test_a_name_another_plugin_registers_is_refused(tmp_path, toy_registered):
    with pytest.raises(ConfigError, match="system 'toy' is already registered by plugin 'toy-plugin'"):
        scaffold.new_plugin("toy", tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_an_existing_target_is_refused_unless_it_is_an_empty_directory(tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    code, _, err = _run(capsys, "new-plugin", NAME, "--path", str(full))
    assert code == 2 and "already exists and is a non-empty directory" in err
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = _run(capsys, "new-plugin", NAME, "--path", str(afile))
    assert code == 2 and "already exists and is a file" in err and afile.read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(capsys, "new-plugin", NAME, "--path", str(empty))[0] == 0
    assert (empty / "pyproject.toml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "empty", "full"]  # no temporary left


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = Path.write_text

    def flaky(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", flaky)
    with pytest.raises(OSError, match="No space left"):
        scaffold.new_plugin(NAME, tmp_path / "plugin")
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary directory


def test_default_path_and_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(capsys, "new-plugin", NAME)
    assert code == 0
    target = tmp_path / "qcsurrogate-scaffold-probe"
    written = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert written == sorted(
        ["README.md", "conftest.py", "example.yaml", "pyproject.toml", "tests/test_system.py",
         "qcsurrogate_scaffold_probe/__init__.py", "qcsurrogate_scaffold_probe/plugin.py",
         "qcsurrogate_scaffold_probe/system.py"]
    )
    assert out.startswith("created qcsurrogate-scaffold-probe: distribution qcsurrogate-scaffold-probe, package "
                          "qcsurrogate_scaffold_probe, plugin and system scaffold_probe\n")
    for rel in written:
        assert f"  {rel} " in out
    assert "next:\n  cd qcsurrogate-scaffold-probe\n" in out


def test_pyproject_declares_the_distribution_and_entry_point(tmp_path):
    names, target, _ = scaffold.new_plugin(NAME, tmp_path / "p")
    meta = tomllib.loads((target / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "qcsurrogate-scaffold-probe"
    assert meta["project"]["entry-points"]["qcsurrogate"] == {"scaffold_probe": "qcsurrogate_scaffold_probe.plugin"}
    assert f"qcsurrogate>={qcsurrogate.__version__}" in meta["project"]["dependencies"]
    assert meta["tool"]["setuptools"]["packages"]["find"]["include"] == ["qcsurrogate_scaffold_probe*"]
    assert "{{" not in "".join(p.read_text() for p in target.rglob("*") if p.is_file())


def test_every_template_is_package_data():
    """The wheel ships the templates: pyproject's package-data globs cover every file under template/."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["qcsurrogate.scaffold"]
    template = ROOT / "qcsurrogate" / "scaffold" / "template"
    files = [str(p.relative_to(template.parent)) for p in template.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sorted(files) == sorted(f"template/{t}" for t in scaffold.TEMPLATE_FILES)
    for f in files:
        assert any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs), f"{f} is not package data"


# -- the generated plugin works ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    names, target, _ = scaffold.new_plugin(NAME, tmp_path_factory.mktemp("scaffold") / "plugin")
    return target


@pytest.fixture
def probe(generated, monkeypatch, clean_registry):
    """The generated package imported from its directory and registered in-process as its entry point would."""
    monkeypatch.syspath_prepend(str(generated))
    try:
        plugin = importlib.import_module("qcsurrogate_scaffold_probe.plugin")
        qcsurrogate.register_plugin(plugin, name="scaffold_probe")
        yield importlib.import_module("qcsurrogate_scaffold_probe")
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "qcsurrogate_scaffold_probe"]:
            del sys.modules[name]


def test_generated_system_passes_the_kit(probe):
    system = qcsurrogate.load_system("scaffold_probe", L=5, g=0.7)
    assert isinstance(system, probe.ScaffoldProbeSystem)
    assert qcsurrogate.list_plugins()["scaffold_probe"]["systems"] == ["scaffold_probe"]
    passed = check_system(system, scenario_kwargs={"displaced": {"n_traj": 2, "seed": 3}}, n_steps=15)
    assert {"von_neumann_generator[displaced]", "rk4_order[random]", "graph_matches_rhs",
            "scenarios_deterministic"} <= set(passed)


def test_generated_example_config_runs_through_the_pipeline(probe, generated, tmp_path, capsys):
    cfg = yaml.safe_load((generated / "example.yaml").read_text())
    assert cfg["data"]["system"]["name"] == "scaffold_probe"
    run = tmp_path / "run"
    code, out, err = _run(capsys, "run", str(generated / "example.yaml"), "--output", str(run))
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["next_step"]["rmse_total"] < 1.0
    assert (run / "figures" / "observables.png").exists()


def test_generated_tests_pass_in_a_subprocess(generated):
    """Its own tests, uninstalled: its conftest.py registers the plugin, as documented."""
    path = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=generated, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
