"""The core's conformance kit, one pytest case per check, on periodic and open chains."""

from __future__ import annotations

import pytest
import torch

from qcsurrogate.testing import check_system, parametrize_with_checks, random_density_matrix, random_state
from qcsurrogate_holstein import HolsteinChain


def _kit_kwargs(system: HolsteinChain) -> dict:
    gen = torch.Generator().manual_seed(7)
    rho = random_density_matrix(system.L, system.L // 2, (2,), gen)
    Q = 0.2 * torch.randn(2, system.L, generator=gen, dtype=torch.float64)
    P = 0.2 * torch.randn(2, system.L, generator=gen, dtype=torch.float64)
    return {
        "shallow_quench": {"g_initial": 0.5},
        "deep_quench": {"n_traj": 2, "sigma": 1e-2, "seed": 3},
        "from_arrays": {"Q": Q, "P": P, "rho": rho},
        "from_state": {"state": random_state(system, batch=(2,), seed=5)},
    }


@pytest.mark.filterwarnings("ignore::qcsurrogate_holstein.DegenerateFermiLevelWarning")
@parametrize_with_checks(
    [HolsteinChain(L=8, g=0.8, boundary=boundary) for boundary in ("periodic", "open")],
    scenario_kwargs=_kit_kwargs,
    n_steps=30,
)
def test_conformance_check(system, check):
    check()


def test_check_system_entry_point():
    """The one-call entry point too, on an odd-length open chain (no CDW commensurability)."""
    system = HolsteinChain(L=5, g=1.1, boundary="open")
    passed = check_system(system, scenario_kwargs=_kit_kwargs(system), n_steps=20)
    assert "scenarios_deterministic" in passed and any(p.startswith("rk4_order") for p in passed)
