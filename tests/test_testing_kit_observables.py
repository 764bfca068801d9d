"""The kit's `observables_declared` check: what metrics and figures will evaluate is valid and batched."""

from __future__ import annotations

import pytest

from qcsurrogate.observables import Observable
from qcsurrogate.testing import CHECKS, check_system, iter_checks

from toy_system import BrokenToyBatchMixingObservable, ToySystem


def _run(system, check="observables_declared"):
    """Run `check` on every test state of the kit; the ids that ran."""
    ran = []
    for cid, run in iter_checks(system):
        if cid.startswith(check):
            run()
            ran.append(cid)
    assert ran, f"no {check} in the kit"
    return ran


def test_default_observables_pass():
    assert "observables_declared" in CHECKS
    assert len(_run(ToySystem(L=4))) >= 2  # one per test state


def test_batch_mixing_observable_fails_naming_it():
    with pytest.raises(AssertionError, match="observable 'mean_X' of a batch differs from the same state evaluated alone"):
        _run(BrokenToyBatchMixingObservable(L=4))


class _Declares(ToySystem):
    def __init__(self, obs, **kw):
        super().__init__(**kw)
        self._obs = obs

    def observables(self):
        return self._obs


@pytest.mark.parametrize(
    ("obs", "message"),
    [
        ((), "declares nothing"),
        ((Observable("nan_X", lambda s: s["X"].sum(-1) * float("nan")),), "'nan_X' is not finite"),
        ((Observable("bad_shape", lambda s: s["X"]),), "returned shape"),
        ((Observable("cplx", lambda s: s.rho.diagonal(dim1=-2, dim2=-1).sum(-1)),), "'cplx' is complex"),
    ],
    ids=["empty", "nan", "shape", "complex"],
)
def test_bad_declarations_fail_with_their_message(obs, message):
    with pytest.raises((AssertionError, ValueError), match=message):
        _run(_Declares(obs, L=4))


def test_holstein_declarations_pass():
    holstein = pytest.importorskip("qcsurrogate_holstein")
    passed = check_system(holstein.HolsteinChain(L=6), scenario_kwargs={"deep_quench": {"n_traj": 2}})
    assert any(p.startswith("observables_declared") for p in passed)
