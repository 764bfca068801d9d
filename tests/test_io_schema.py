"""The trajectory schema helpers: JSON conversion of metadata, attribute decoding and type checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from qcsurrogate.io import SCHEMA, SCHEMA_VERSION, TrajectoryFormatError
from qcsurrogate.io import schema as S


def test_schema_constants_match_the_documented_format():
    assert SCHEMA == "qcsurrogate.trajectory/1" and SCHEMA_VERSION == 1
    assert S.SCHEMA_ATTR == "qcsurrogate_schema"
    assert (S.FIELDS_GROUP, S.RHO_DATASET, S.TIME_DATASET) == ("fields", "rho", "time")
    assert S.TIME_UNITS == "hbar/t"
    assert S.PRECISIONS == {
        "float64": (np.dtype("float64"), np.dtype("complex128")),
        "float32": (np.dtype("float32"), np.dtype("complex64")),
    }
    assert S.COMPRESSIONS == (None, "gzip", "lzf")
    assert issubclass(TrajectoryFormatError, ValueError)


# -- graph_label ----------------------------------------------------------------------------------------
def test_graph_label_matches_the_dependency_graph_repr():
    graph = {"Q": [["P", "identity"]], "P": [["Q", "identity"], ["rho", "diagonal"]],
             "rho": [["Q", "identity"], ["rho", "matrix"]]}
    # identity and matrix views print the bare source; any other view wraps it
    assert S.graph_label(graph) == "Q <- P; P <- Q, diagonal(rho); rho <- Q, rho"
    assert S.graph_label({"a": [["b", "custom"]]}) == "a <- custom(b)"
    assert S.graph_label({}) == ""


# -- to_jsonable / dumps -------------------------------------------------------------------------------
def test_to_jsonable_plain_values_pass_through():
    for v in (None, True, False, 0, -3, "s", 1.5):
        out = S.to_jsonable(v)
        assert out == v and type(out) is type(v)


def test_to_jsonable_converts_numpy_torch_tuples_and_paths():
    out = S.to_jsonable({"a": np.float32(0.5), "b": (1, np.int64(2)), "c": [np.bool_(True)],
                         "d": torch.tensor(3), "e": torch.tensor(2.5, dtype=torch.float64),
                         "f": Path("/x/y"), "g": {"h": (None,)}})
    assert out == {"a": 0.5, "b": [1, 2], "c": [True], "d": 3, "e": 2.5, "f": "/x/y", "g": {"h": [None]}}
    assert type(out["b"][1]) is int and type(out["c"][0]) is bool and type(out["d"]) is int
    assert type(out["a"]) is float and type(out["e"]) is float
    assert json.loads(json.dumps(out)) == out


def test_to_jsonable_rejects_unknown_objects_naming_where():
    with pytest.raises(TypeError, match=r"^cfg\.opts\[1\]: object <object object at .*> is not JSON-serialisable$"):
        S.to_jsonable({"opts": [1, object()]}, where="cfg")
    with pytest.raises(TypeError, match=r"^value: Tensor .* is not JSON-serialisable$"):
        S.to_jsonable(torch.zeros(2))  # not 0-d: not a scalar
    with pytest.raises(TypeError, match=r"^cfg\.a: keys must be strings, got 1$"):
        S.to_jsonable({"a": {1: "x"}}, where="cfg")
    with pytest.raises(TypeError, match=r"^value\.x\[0\]\.y: set"):
        S.to_jsonable({"x": [{"y": {1}}]})


def test_to_jsonable_lenient_keeps_repr_everywhere():
    class Thing:
        def __repr__(self):
            return "<thing>"

    assert S.to_jsonable(Thing(), lenient=True) == "<thing>"
    assert S.to_jsonable({"a": [Thing()], "b": {"c": Thing()}}, lenient=True) == {"a": ["<thing>"], "b": {"c": "<thing>"}}
    with pytest.raises(TypeError):
        S.to_jsonable({"a": [Thing()]}, lenient=False)


def test_to_jsonable_item_errors_fall_through_to_the_type_error():
    class BadItem:
        ndim = 0

        def item(self):
            raise RuntimeError("no")

    with pytest.raises(TypeError, match="BadItem"):
        S.to_jsonable(BadItem())
    assert S.to_jsonable(BadItem(), lenient=True).startswith("<")


def test_dumps_keeps_key_order_and_nan_and_passes_where_and_lenient():
    assert S.dumps({"b": 1, "a": (2, 3)}) == '{"b": 1, "a": [2, 3]}'
    assert S.dumps([math.nan, math.inf]) == "[NaN, Infinity]"
    with pytest.raises(TypeError, match=r"^opts\.k: object"):
        S.dumps({"k": object()}, where="opts")
    assert json.loads(S.dumps({"k": object()}, lenient=True))["k"].startswith("<object object")


# -- decode_attr -------------------------------------------------------------------------------------------
def test_decode_attr_json_and_scalars():
    assert S.decode_attr("params", '{"L": 4, "t": 1.0}') == {"L": 4, "t": 1.0}
    assert S.decode_attr("params", b'{"L": 4}') == {"L": 4}
    assert S.decode_attr("system", b"toy") == "toy"
    for name in S.JSON_ATTRS:
        assert S.decode_attr(name, "[1]") == [1]
    out = S.decode_attr("L", np.int64(4))
    assert out == 4 and type(out) is int
    out = S.decode_attr("dt", np.float64(0.5))
    assert out == 0.5 and type(out) is float
    assert S.decode_attr("x", np.array([1, 2])) == [1, 2]
    assert S.decode_attr("system", "toy") == "toy"
    # a non-JSON attribute holding JSON-looking text stays text
    assert S.decode_attr("system", "[1]") == "[1]"


def test_decode_attr_errors():
    with pytest.raises(TrajectoryFormatError, match=r"^attribute 'graph' should be JSON text, found int64$"):
        S.decode_attr("graph", np.int64(3))
    with pytest.raises(TrajectoryFormatError, match=r"^attribute 'params' is not valid JSON \(.+\)$"):
        S.decode_attr("params", "{oops")


# -- check_attr_type -----------------------------------------------------------------------------------------
def test_check_attr_type_coerces_int_to_float_only():
    out = S.check_attr_type("dt", 2, float)
    assert out == 2.0 and type(out) is float
    assert S.check_attr_type("L", 3, int) == 3
    assert S.check_attr_type("name", "x", str) == "x"
    assert S.check_attr_type("x", 3, (str, int)) == 3
    with pytest.raises(TrajectoryFormatError, match=r"^attribute 'dt' should be float, found bool True$"):
        S.check_attr_type("dt", True, float)
    with pytest.raises(TrajectoryFormatError, match=r"^attribute 'L' should be an integer, found True$"):
        S.check_attr_type("L", True, int)
    with pytest.raises(TrajectoryFormatError, match=r"^attribute 'L' should be int, found float 3\.0$"):
        S.check_attr_type("L", 3.0, int)
    with pytest.raises(TrajectoryFormatError, match=r"^attribute 'x' should be str/int, found float 1\.5$"):
        S.check_attr_type("x", 1.5, (str, int))
    with pytest.raises(TrajectoryFormatError, match=r"^attribute 'system' should be str, found int 3$"):
        S.check_attr_type("system", 3, str)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_attr_type_rejects_non_finite_floats(bad):
    with pytest.raises(TrajectoryFormatError, match=rf"^attribute 'dt' is not finite: {bad!r}$"):
        S.check_attr_type("dt", bad, float)
