"""The worked example of docs/plugins.md (examples/plugin_template) keeps working against the core.

It is imported from the source tree (not installed), registered in-process, run through the
conformance kit, and its graph (with its custom 'bond_matrix' view) is wired into the core's PARC.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

import qcsurrogate
from qcsurrogate import registry
from qcsurrogate.surrogate import PARC, Normalization, PARCConfig
from qcsurrogate.testing import check_system

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "plugin_template"


@pytest.fixture
def ssh(monkeypatch):
    """The template package, imported afresh from the source tree; the module does not outlive the test
    (importing it registers nothing: its plugin module's hooks do, once the plugin is registered).

    When examples/plugin_template/tests run in the same session, that directory's conftest.py has
    registered the template in-process already; the registration is hidden for the test and put back after.
    """
    def ours() -> list[str]:
        return [m for m in sys.modules if m == "qcsurrogate_ssh" or m.startswith("qcsurrogate_ssh.")]

    saved = list(registry._extra)
    hidden = [(n, p) for n, p in saved if getattr(p, "__name__", "").split(".")[0] == "qcsurrogate_ssh"]
    if hidden:
        registry._extra[:] = [e for e in saved if e not in hidden]
        registry.get_registry(reload=True)
    monkeypatch.syspath_prepend(str(TEMPLATE))
    for name in ours():
        monkeypatch.delitem(sys.modules, name)  # put back by monkeypatch after the test
    try:
        yield importlib.import_module("qcsurrogate_ssh")
    finally:
        for name in ours():
            del sys.modules[name]  # the fresh copies, including submodules first imported by the test
        if hidden:
            registry._extra[:] = saved
            registry.get_registry(reload=True)


def test_template_is_a_complete_package():
    """An installable distribution: the entry point in the `qcsurrogate` group, a README, tests."""
    text = (TEMPLATE / "pyproject.toml").read_text()
    assert "[project.entry-points.qcsurrogate]" in text and 'ssh = "qcsurrogate_ssh.plugin"' in text
    assert (TEMPLATE / "README.md").exists() and list((TEMPLATE / "tests").glob("test_*.py"))


@pytest.fixture
def ssh_registered(ssh, clean_registry):
    """The template registered in-process as plugin 'ssh-template' (as its entry point would), until the test ends."""
    qcsurrogate.register_plugin(importlib.import_module("qcsurrogate_ssh.plugin"), name="ssh-template")
    return ssh


def test_importing_the_template_registers_nothing(ssh):
    assert "bond_matrix" not in qcsurrogate.available_views()


def test_template_registers_and_passes_the_kit(ssh_registered, clean_registry):
    ssh = ssh_registered
    assert clean_registry.list_plugins()["ssh-template"]["systems"] == ["ssh"]
    assert clean_registry.list_plugins()["ssh-template"]["views"] == ["bond_matrix"]
    system = qcsurrogate.load_system("ssh", L=6, alpha=0.6)
    assert isinstance(system, ssh.SSHChain) and system.field_names == ("u", "p")
    passed = check_system(system, scenario_kwargs={"random_bonds": {"n_traj": 2, "seed": 1}}, dt=0.1, n_steps=10)
    expected = {"rhs_shapes_dtypes[dimerized]", "rk4_order[random_bonds]", "scenarios_deterministic",
                "graph_matches_rhs"}
    assert expected <= set(passed)


@pytest.mark.parametrize(
    "scenario, kwargs, integrator_inputs",
    [("dimerized", {}, "derivative"), ("random_bonds", {"n_traj": 3}, "state")],
)
def test_template_graph_drives_parc(ssh_registered, scenario, kwargs, integrator_inputs):
    system = ssh_registered.SSHChain(L=6)
    graph = system.graph
    assert qcsurrogate.get_view("bond_matrix").fn is ssh_registered.bond_matrix
    assert graph.to_dict()["rho"] == [["u", "bond_matrix"], ["rho", "matrix"]]
    config = PARCConfig(width=8, integrator_inputs=integrator_inputs)
    model = PARC(graph, system.boundary, config, Normalization.identity(graph))
    state = system.initial_state(scenario, **kwargs)
    nxt, aux = model.predict(model.prepare(state))
    for name in state.names:
        assert nxt[name].shape == state[name].shape
        assert torch.isfinite(torch.view_as_real(nxt[name]) if nxt[name].is_complex() else nxt[name]).all()
    assert nxt.rho.is_complex() and not nxt["u"].is_complex()
    # The spec is JSON naming the view; the model rebuilds from it while the plugin is registered.
    again = PARC.from_spec(model.spec())
    assert again.graph == graph
