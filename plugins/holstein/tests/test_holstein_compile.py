"""One small compiled run: rhs_real must trace whole (fullgraph) and agree with eager RK4."""

from __future__ import annotations

import pytest

from qcsurrogate import simulate
from qcsurrogate.testing import random_state
from qcsurrogate_holstein import HolsteinChain


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_compiled_rk4_matches_eager():
    """Periodic only, to pay the 10-30 s of compilation once; the open chain's pad path was checked
    by hand the same way (see README) and is exercised eagerly everywhere else."""
    system = HolsteinChain(L=4, g=1.0)
    state = random_state(system, batch=(2,), seed=1)
    eager = simulate(system, state, 0.05, 10)
    compiled = simulate(system, state, 0.05, 10, compile=True)
    assert compiled.allclose(eager, rtol=1e-12, atol=1e-13)
