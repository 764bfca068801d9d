"""Damaged model and checkpoint files: one ArtifactError naming the file and what is wrong, whatever the
damage (truncation at any offset, random bytes in the header, dropped keys and tensors, pickles), and the
CLI turns it into exit code 2 with no traceback."""

from __future__ import annotations

import json
import pickle
import shutil
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from toy_system import ToySystem

from qcsurrogate.artifacts import ArtifactError, read_json, read_safetensors
from qcsurrogate.surrogate import PARCConfig, build_surrogate
from qcsurrogate.surrogate.normalization import Normalization
from qcsurrogate.training.checkpoint import latest_checkpoint, load_checkpoint, load_model, save_checkpoint, save_model

SYSTEM = ToySystem(L=4)


def _model(width: int = 4):
    torch.manual_seed(0)
    return build_surrogate("parc", SYSTEM, PARCConfig(width=width, dtype="float64"), Normalization.identity(SYSTEM.graph))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved model and a checkpoint of it, written once; tests damage copies."""
    root = tmp_path_factory.mktemp("artifacts")
    model = _model()
    save_model(model, root / "model")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(model.prepare(SYSTEM.initial_state("random_start", seed=0, n_traj=2))).rho.abs().sum().backward()
    opt.step()
    save_checkpoint(root / "ckpt", 3, model, opt, {})
    return root


@pytest.fixture
def copy(saved, tmp_path):
    shutil.copytree(saved, tmp_path / "c")
    return tmp_path / "c"


def _load(directory):
    with pytest.raises(ArtifactError) as info:
        load_model(directory)
    return str(info.value)


# -- model directories --------------------------------------------------------------------------------
def test_an_intact_model_loads(copy):
    assert load_model(copy / "model").n_parameters() == _model().n_parameters()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: (d / "model.safetensors").write_bytes(pickle.dumps({"w": 1})),
         "model.safetensors: is a pickle (protocol 4), not a safetensors file; qcsurrogate never unpickles"),
        (lambda d: torch.save({"w": torch.ones(2)}, d / "model.safetensors"),
         "model.safetensors: is a zip archive (torch.save writes pickles in one), not a safetensors file"),
        (lambda d: (d / "model.safetensors").write_bytes(b""),
         "model.safetensors: is 0 bytes long, too short for a safetensors file (truncated?)"),
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors: is missing"),
        (lambda d: (d / "model.json").write_text('{"surrogate": "parc", "graph'),
         "model.json: is not valid JSON (line 1, column 23: Unterminated string"),
        (lambda d: (d / "model.json").write_text(""), "model.json: is empty; the file is damaged or truncated"),
        (lambda d: (d / "model.json").unlink(), "model.json: is missing"),
        (lambda d: _edit_json(d / "model.json", lambda j: j.pop("normalization")),
         "model.json: is not a valid ModelSpec: normalization: Field required"),
        (lambda d: _edit_json(d / "model.json", lambda j: j.update(surrogate=7)),
         "model.json: is not a valid ModelSpec: surrogate: Input should be a valid string"),
        (lambda d: _edit_json(d / "model.json", lambda j: j["config"].update(width=8)),
         "model.safetensors: does not hold the weights model.json describes: "),
        (lambda d: _edit_json(d / "model.json", lambda j: j["config"].update(width=-3)),
         "model.json: does not describe a 'parc' model: "),
        (lambda d: _edit_json(d / "model.json", lambda j: j.update(surrogate="nope")),
         "model.json: does not describe a 'nope' model: unknown surrogate 'nope'"),
        (lambda d: _edit_tensors(d / "model.safetensors", lambda t: t.pop(min(t))),
         "model.safetensors: does not hold the weights model.json describes: 1 missing ("),
        (lambda d: _edit_tensors(d / "model.safetensors",
                                 lambda t: t.update({k: t[k].reshape(-1)[:1] for k in sorted(t) if t[k].numel() > 1})),
         "of another shape or type"),
        (lambda d: _edit_tensors(d / "model.safetensors", lambda t: t.update(extra=torch.ones(1))),
         "1 unexpected (extra)"),
    ],
)
def test_a_damaged_model_directory_is_one_clear_error(copy, damage, expected):
    damage(copy / "model")
    assert expected in _load(copy / "model")


def test_a_model_path_that_is_no_directory(tmp_path):
    assert "is not a model directory" in _load(tmp_path / "nothing")


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _edit_tensors(path, change):
    tensors = load_file(str(path))
    change(tensors)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_truncation_or_header_corruption_of_the_weights_is_an_artifact_error(saved, tmp_path, data):
    blob = (saved / "model" / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    if data.draw(st.booleans(), label="truncate"):
        damaged = blob[: data.draw(st.integers(0, len(blob) - 1), label="cut")]
    else:  # overwrite a few bytes of the length prefix or the JSON header
        at = data.draw(st.integers(0, 8 + n - 1), label="offset")
        junk = data.draw(st.binary(min_size=1, max_size=8), label="junk")
        damaged = blob[:at] + junk + blob[at + len(junk):]
        if damaged == blob:
            return
    d = tmp_path / f"m{abs(hash(damaged)) % 10**8}"
    shutil.copytree(saved / "model", d)
    (d / "model.safetensors").write_bytes(damaged)
    try:
        model = load_model(d)
    except ArtifactError as err:
        assert str(err).startswith(str(d / "model.safetensors") + ": ")
        return
    # a change inside the JSON that keeps it valid (a digit of an offset, say) can load: then it loaded
    # exactly the tensors its header describes, with the shapes the model expects
    assert all(v.shape == w.shape for v, w in zip(model.state_dict().values(), _model().state_dict().values()))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10_000), drop=st.sampled_from(["", "surrogate", "graph", "boundary", "config", "normalization"]))
def test_any_truncated_or_incomplete_model_json_is_an_artifact_error(saved, tmp_path, cut, drop):
    text = (saved / "model" / "model.json").read_text()
    spec = json.loads(text)
    if drop:
        spec.pop(drop)
        text = json.dumps(spec)
    elif cut >= len(text) - 1:
        return  # the whole file (a final newline at most is cut)
    else:
        text = text[:cut]
    d = tmp_path / f"j{cut}{drop}"
    shutil.copytree(saved / "model", d)
    (d / "model.json").write_text(text)
    with pytest.raises(ArtifactError, match=r"model\.json: "):
        load_model(d)


# -- checkpoints --------------------------------------------------------------------------------------
def _resume(ckpt_root):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ArtifactError) as info:
        load_checkpoint(latest_checkpoint(ckpt_root), model, opt)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-loaded
    return str(info.value)


def test_an_intact_checkpoint_resumes(copy):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert load_checkpoint(latest_checkpoint(copy / "ckpt"), model, opt)["step"] == 3


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda c: _edit_json(c / "step-00000003" / "meta.json", lambda j: j.pop("step")),
         "meta.json: is not a valid CheckpointMeta: step: Field required"),
        (lambda c: _edit_json(c / "step-00000003" / "meta.json", lambda j: j.update(step="three")),
         "meta.json: is not a valid CheckpointMeta: step: Input should be a valid integer"),
        (lambda c: _edit_json(c / "step-00000003" / "meta.json", lambda j: j["optimizer"].pop("param_groups")),
         "meta.json: is not a valid CheckpointMeta: optimizer.param_groups: Field required"),
        (lambda c: _edit_json(c / "step-00000003" / "meta.json", lambda j: j["optimizer"]["param_groups"].append({"params": [99]})),
         "optimizer.safetensors: does not fit this model's optimizer"),
        (lambda c: _edit_tensors(c / "step-00000003" / "optimizer.safetensors",
                                 lambda t: t.update({k: t[k].reshape(-1)[:1] for k in sorted(t) if k.endswith("exp_avg")})),
         "exp_avg has shape (1,), its parameter"),
        (lambda c: (c / "step-00000003" / "optimizer.safetensors").write_bytes(pickle.dumps([1])),
         "optimizer.safetensors: is a pickle (protocol 4)"),
        (lambda c: (c / "latest.json").write_text("not json"), "latest.json: is not valid JSON (line 1, column 1"),
        (lambda c: (c / "latest.json").write_text('{"step": 3, "path": "../../etc"}'),
         "latest.json: is not a valid LatestPointer: path: String should match pattern"),
        (lambda c: shutil.rmtree(c / "step-00000003"),
         "latest.json: names checkpoint step-00000003, which is not there (complete checkpoints: none)"),
    ],
)
def test_a_damaged_checkpoint_is_one_clear_error_and_changes_nothing(copy, damage, expected):
    damage(copy / "ckpt")
    assert expected in _resume(copy / "ckpt")


def test_json_helper_names_the_file_and_a_directory(tmp_path):
    with pytest.raises(ArtifactError, match=r"is a directory, not a JSON file"):
        read_json(tmp_path)
    (tmp_path / "b.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ArtifactError, match=r"b\.json: is not JSON \(not even UTF-8 text\)"):
        read_json(tmp_path / "b.json")
    with pytest.raises(ArtifactError, match="is missing"):
        read_safetensors(tmp_path / "none.safetensors")


@pytest.mark.usefixtures("toy_registered")
def test_the_cli_reports_a_damaged_run_model_with_exit_code_2(tmp_path, capsys):
    from test_pipeline import write_config

    from qcsurrogate.cli import main

    cfg = write_config(tmp_path, baselines=[])
    assert main(["train", str(cfg)]) == 0
    weights = tmp_path / "run" / "model" / "model.safetensors"
    weights.write_bytes(pickle.dumps({"w": 1}))
    capsys.readouterr()
    assert main(["evaluate", str(cfg)]) == 2
    err = capsys.readouterr().err
    # the run's ledger sees the change before the file is read (it records every output's digest)
    assert (f"qcsurrogate: error: the trained 'model' in {weights.parent} is stale (model/model.safetensors was "
            "modified after it was written); run `qcsurrogate train` first") in err
    assert "Traceback" not in err and not (tmp_path / "run" / "metrics.json").exists()


# -- a run directory's own JSON files -----------------------------------------------------------------------
@pytest.mark.usefixtures("toy_registered")
@pytest.mark.parametrize(("name", "expected"), [
    ("split.json", "split.json: is not valid JSON (line 1, column 2"),
    ("stages.json", "stages.json: is not valid JSON (line 1, column 2: Expecting property name enclosed in double "
                    "quotes); the file is damaged or truncated; it records what every stage of the run was made "
                    "from: remove it to redo them all"),
])
def test_a_damaged_run_file_is_named_and_evaluate_exits_2(tmp_path, capsys, name, expected):
    from test_pipeline import write_config

    from qcsurrogate.cli import main

    cfg = write_config(tmp_path, baselines=[])
    assert main(["train", str(cfg)]) == 0
    (tmp_path / "run" / name).write_text("{bad")
    capsys.readouterr()
    assert main(["evaluate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"qcsurrogate: error: {tmp_path / 'run' / name}" in err and expected in err and "Traceback" not in err
