"""Property-based: whatever a config document holds (keys dropped, values replaced by other types or out of
range, garbage YAML), loading it gives a valid config or one ConfigError naming the file, never another
exception; and a run config that loads either passes the preflight or fails it with a ConfigError."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pipeline import TINY

from qcsurrogate.pipeline import load_run_config
from qcsurrogate.pipeline.preflight import preflight
from qcsurrogate.system import ConfigError

pytestmark = pytest.mark.usefixtures("toy_registered")

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.lists(st.integers(-3, 40), max_size=4), st.just({}))


def _paths(doc, prefix=()):
    """Every key path of a nested mapping."""
    for k, v in doc.items():
        yield (*prefix, k)
        if isinstance(v, dict):
            yield from _paths(v, (*prefix, k))


PATHS = sorted(_paths(TINY), key=str)


@st.composite
def damaged_documents(draw):
    doc = copy.deepcopy(TINY)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS))
        parent = doc
        for k in path[:-1]:
            parent = parent.get(k) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(SCALARS)
    if draw(st.integers(0, 9)) == 0:
        doc[draw(st.text(min_size=1, max_size=8))] = draw(SCALARS)  # an unknown key
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=damaged_documents())
def test_a_damaged_config_document_loads_or_is_one_config_error(tmp_path, doc):
    path = tmp_path / "c.yaml"
    doc["output_dir"] = str(tmp_path / "run")
    path.write_text(yaml.safe_dump(doc))
    try:
        cfg = load_run_config(path)
    except ConfigError as err:
        assert str(path) in str(err)
        return
    try:
        preflight(cfg)
    except ConfigError as err:
        assert "nothing was written" in str(err)
    assert not (tmp_path / "run").exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_text_as_a_config_file_is_one_config_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_run_config(path)
