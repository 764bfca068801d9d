"""Device selection: 'auto', 'cpu', 'cuda', 'cuda:N' resolve everywhere; the GPU checks run where a GPU is
and skip cleanly elsewhere (this project's CI has none)."""

from __future__ import annotations

import pytest
import torch
from toy_system import ToySystem

from qcsurrogate import simulate
from qcsurrogate.device import resolve_device
from qcsurrogate.surrogate import PARC, Normalization, PARCConfig

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_and_cpu_resolve_here():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_clear_error(name):
    with pytest.raises(RuntimeError, match=f"device '{name}' requested but CUDA is not available here"):
        resolve_device(name)


@needs_cuda
def test_ground_truth_on_the_gpu_matches_the_cpu():
    system = ToySystem(L=6)
    s0 = system.initial_state("random_start", seed=0, n_traj=3)
    cpu = simulate(system, s0, 0.05, 40)
    gpu = simulate(system, s0, 0.05, 40, device="cuda")
    assert gpu.rho.device.type == "cuda" and gpu.rho.dtype == torch.complex128  # float64 on the GPU too
    assert gpu.to(device="cpu").allclose(cpu, rtol=0, atol=1e-12)


@needs_cuda
@pytest.mark.parametrize("autocast", ["none", "bf16"])
def test_surrogate_on_the_gpu_matches_the_cpu(autocast):
    system = ToySystem(L=6)
    torch.manual_seed(0)
    model = PARC(system.graph, system.boundary, PARCConfig(width=8, autocast=autocast), Normalization.identity(system.graph)).eval()
    s0 = system.initial_state("random_start", seed=0, n_traj=3)
    cpu = model.rollout(s0, 5)
    gpu = model.to("cuda").rollout(s0.to(device="cuda"), 5)
    tol = 1e-4 if autocast == "none" else 5e-2  # bfloat16 keeps 8 bits of mantissa
    assert gpu.to(device="cpu").allclose(cpu, rtol=0, atol=tol)


def test_simulation_device_auto_is_the_gpu_when_there_is_one(tmp_path):
    from qcsurrogate.config import SimulationConfig

    sim = SimulationConfig(dt=0.1, n_steps=2, device="auto")
    assert sim.device == "auto" and sim.compute_device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert SimulationConfig(dt=0.1, n_steps=2, device="cuda:1").compute_device == "cuda:1"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.usefixtures("toy_registered")
def test_a_simulation_on_a_missing_gpu_is_caught_before_anything_is_written(tmp_path):
    from test_pipeline import write_config

    from qcsurrogate.pipeline import load_run_config
    from qcsurrogate.pipeline.preflight import preflight
    from qcsurrogate.system import ConfigError

    cfg = load_run_config(write_config(tmp_path))
    cfg.data.simulation.device = "cuda"
    with pytest.raises(ConfigError, match=r"  data\.simulation\.device: device 'cuda' is not available here"):
        preflight(cfg)
