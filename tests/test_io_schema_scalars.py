"""to_jsonable's scalar unwrapping is for 0-d objects only, and dumps' default `where` label."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qcsurrogate.io import schema as S


class _Arrayish:
    """Has `item()` (which would succeed) but is not 0-d: not a scalar, must not be unwrapped."""

    def __init__(self, ndim):
        self.ndim = ndim

    def item(self):
        return 7


@pytest.mark.parametrize("obj", [np.array([1.5]), np.array([[2]]), torch.tensor([1.5]), torch.tensor([[3]])])
def test_one_element_arrays_are_not_scalars(obj):
    # `.item()` would succeed on a one-element array, but only 0-d objects are scalars
    with pytest.raises(TypeError, match=rf"^value: {type(obj).__name__} .* is not JSON-serialisable$"):
        S.to_jsonable(obj)
    assert S.to_jsonable(obj, lenient=True) == repr(obj)


def test_item_is_used_only_when_ndim_is_zero():
    assert S.to_jsonable(_Arrayish(0)) == 7
    assert S.to_jsonable({"k": [_Arrayish(0)]}) == {"k": [7]}
    with pytest.raises(TypeError, match=r"^value: _Arrayish "):
        S.to_jsonable(_Arrayish(1))

    class NoNdim:  # an `item` method alone does not make a scalar
        def item(self):
            return 7

    with pytest.raises(TypeError, match=r"^value: NoNdim "):
        S.to_jsonable(NoNdim())

    class NoItem:  # nor does ndim == 0 without `item`
        ndim = 0

    with pytest.raises(TypeError, match=r"^value: NoItem "):
        S.to_jsonable(NoItem())


def test_zero_d_arrays_and_tensors_unwrap_to_python_scalars():
    out = S.to_jsonable([np.array(2.5), torch.tensor(4), torch.tensor(True)])
    assert out == [2.5, 4, True] and [type(v) for v in out] == [float, int, bool]


def test_dumps_default_where_is_value():
    with pytest.raises(TypeError, match=r"^value: object <object object at .*> is not JSON-serialisable$"):
        S.dumps(object())
    with pytest.raises(TypeError, match=r"^value\.a\[1\]: set "):
        S.dumps({"a": [0, {1}]})
    with pytest.raises(TypeError, match=r"^value: keys must be strings, got 2$"):
        S.dumps({2: 0})


def test_dumps_writes_non_finite_floats_and_round_trips():
    text = S.dumps({"x": float("nan"), "y": [float("-inf"), np.float32(0.5)], "z": (1, "a")})
    back = json.loads(text)
    assert np.isnan(back["x"]) and back["y"] == [float("-inf"), 0.5] and back["z"] == [1, "a"]
