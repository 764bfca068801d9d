"""State.stack along an inner batch axis."""

from __future__ import annotations

import numpy as np
import torch

from qcsurrogate.state import RHO, State


def _state(seed: int, batch=(2,), L=3) -> State:
    rng = np.random.default_rng(seed)
    return State({"X": rng.normal(size=(*batch, L)), "V": rng.normal(size=(*batch, L))},
                 rng.normal(size=(*batch, L, L)) + 1j * rng.normal(size=(*batch, L, L)))


def test_stack_along_an_inner_axis_puts_the_new_axis_there_for_every_variable():
    a, b, c = _state(0), _state(1), _state(2)
    st = State.stack([a, b, c], dim=1)
    assert st.batch_shape == torch.Size([2, 3])
    assert st.fields["X"].shape == (2, 3, 3) and st.fields["V"].shape == (2, 3, 3) and st.rho.shape == (2, 3, 3, 3)
    for j, s in enumerate((a, b, c)):
        for name in ("X", "V", RHO):
            assert torch.equal(st[name][:, j], s[name])
    # and it is the transpose of stacking along the leading axis
    lead = State.stack([a, b, c])
    for name in ("X", "V", RHO):
        assert torch.equal(st[name], lead[name].transpose(0, 1))


def test_stack_along_an_inner_axis_of_a_two_dimensional_batch():
    a, b = _state(3, batch=(2, 4)), _state(4, batch=(2, 4))
    st = State.stack([a, b], dim=2)
    assert st.batch_shape == torch.Size([2, 4, 2])
    for name in ("X", "V", RHO):
        assert torch.equal(st[name][:, :, 0], a[name]) and torch.equal(st[name][:, :, 1], b[name])
