"""Conformance kit for System plugins, in the spirit of scikit-learn's `check_estimator`.

Call `check_system(system, ...)` from a plugin's own tests to run every check, or decorate a test
with `parametrize_with_checks([system, ...])` (or parametrize over `iter_checks(system, ...)`) to see
each check pass or fail on its own, with expected failures and their reasons. The checks hold
for any hybrid system whose rho obeys a von Neumann equation with a Hermitian Hamiltonian and
whose classical fields follow Hamiltonian dynamics; each raises `AssertionError` with the numbers.

The `von_neumann_generator` check compares `rhs(state).rho` with `-i [H, rho]` for the one-body
(mean-field) Hamiltonian `H`. By default `H` is the Hermitian gradient of `energy(state)` with
respect to rho, taken by torch autograd, so `energy` must be differentiable in rho. A system whose
energy is not (e.g. computed in numpy) can expose `H` itself through an optional hook,

    def one_body_hamiltonian(self, state: State) -> torch.Tensor:  # Hermitian, (*batch, L*d, L*d)

which the kit then uses instead of autograd. With neither, the check is skipped, not failed: it
raises `CheckSkipped` (a `unittest.SkipTest`, so pytest reports the case as skipped with the
reason) and `check_system` warns with a `ConformanceSkipWarning`.

The `graph_matches_rhs` check compares the declared dependency graph with what `rhs` actually reads
(see `check_graph_matches_rhs`): an undeclared dependency fails, a declared one that never matters warns.

The `invariants_conserved` check integrates every quantity the system declares through its
`invariants(state)` hook and requires it conserved (exactly for a linear one, with a drift falling as
dt^4 otherwise); a system that declares none passes it.

Every check runs for systems with several orbitals per site (`System.orbitals = d`, rho `(L*d) x (L*d)`).
A test state that does not fit the system (wrong fields, L, or rho's size), or an rhs whose output is
malformed (a derivative shaped unlike its variable), fails `rhs_shapes_dtypes` for that state with the
details; the checks that cannot run on it are skipped (`CheckSkipped`), naming the reason, instead of
crashing somewhere inside a solver.
"""

from __future__ import annotations

import copy
import functools
import math
import random
import unittest
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .solvers import get_solver, simulate
from .state import RHO, State
from .system import ScenarioArgumentError, System, validate_scenario_kwargs


def random_unitary(L: int, batch: tuple[int, ...] = (), generator: torch.Generator | None = None) -> torch.Tensor:
    """Haar-random unitaries `(*batch, L, L)` via QR of a complex Gaussian matrix."""
    z = torch.randn(*batch, L, L, 2, dtype=torch.float64, generator=generator)
    q, r = torch.linalg.qr(torch.view_as_complex(z))
    d = torch.diagonal(r, dim1=-2, dim2=-1)
    return q * (d / d.abs()).unsqueeze(-2)


def random_density_matrix(
    L: int, n_electrons: int, batch: tuple[int, ...] = (), generator: torch.Generator | None = None, pure: bool = True
) -> torch.Tensor:
    """A random one-body density matrix: a projector on `n_electrons` random orbitals (pure),
    or random occupations in [0, 1] summing to `n_electrons` (mixed)."""
    if not 0 <= n_electrons <= L:
        raise ValueError(f"need 0 <= n_electrons <= L, got n_electrons={n_electrons}, L={L}")
    U = random_unitary(L, batch, generator)
    occ = torch.zeros(*batch, L, dtype=torch.float64)
    occ[..., :n_electrons] = 1.0
    if not pure:
        w = torch.rand(*batch, L, dtype=torch.float64, generator=generator)
        # Random occupations in [f - room, f + room] around the filling f = N/L: they lie in [0, 1]
        # and sum to N exactly (rescaling w by N / sum(w) can exceed 1, and clamping broke the trace).
        f = n_electrons / L
        room = min(f, 1.0 - f)
        dev = w - w.mean(-1, keepdim=True)
        u = f + room * dev / dev.abs().amax(-1, keepdim=True).clamp_min(1e-300)
        occ = (0.5 * occ + 0.5 * u).clamp(0, 1)
    return (U * occ.to(U.dtype).unsqueeze(-2)) @ U.mH


def random_state(
    system: System, batch: tuple[int, ...] = (2,), seed: int = 0, scale: float = 0.3, n_electrons: int | None = None
) -> State:
    """Random fields `~ N(0, scale)` and a random pure-state rho at half filling (by default): `n_electrons`
    defaults to half the `L * system.orbitals` one-body states."""
    gen = torch.Generator().manual_seed(seed)
    L, N = system.L, system.L * system.orbitals
    fields = {n: scale * torch.randn(*batch, L, dtype=torch.float64, generator=gen) for n in system.field_names}
    rho = random_density_matrix(N, n_electrons if n_electrons is not None else N // 2, batch, gen)
    return State(fields, rho)


def hermiticity_error(rho: torch.Tensor) -> float:
    return float((rho - rho.mH).abs().amax())


def trace_of(rho: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(rho, dim1=-2, dim2=-1).sum(-1)


def observed_order(errors: list[float], ratio: float = 2.0) -> list[float]:
    """Convergence orders between successive errors when the step shrinks by `ratio`."""
    return [math.log(e0 / e1) / math.log(ratio) for e0, e1 in zip(errors, errors[1:])]


@dataclass(frozen=True)
class Tolerances:
    """How strict the kit is; the defaults suit float64 ground truth."""

    hermiticity: float = 1e-12
    trace: float = 1e-12
    generator: float = 1e-10
    order_window: tuple[float, float] = (3.5, 4.6)
    energy_order_min: float = 3.3
    dependency: float = 1e-7
    """`graph_matches_rhs`: a derivative "moves" when its response to a unit perturbation exceeds this
    times the largest response of that derivative to any variable (floored at 1)."""


class CheckSkipped(unittest.SkipTest):
    """Raised by a check that cannot run on this system; the message says why.

    A `unittest.SkipTest`, so a pytest case running the check is reported as skipped with the reason.
    """


class ConformanceSkipWarning(UserWarning):
    """`check_system` skipped a check (see `CheckSkipped`); the message names the checks and why."""


class UnusedDependencyWarning(UserWarning):
    """The graph declares an input that never moved the derivative on any test state (`graph_matches_rhs`).

    A warning, not a failure: it costs the surrogate a useless input but loses nothing, and a coupling
    can vanish at particular parameters (Holstein at g = 0) while the graph is declared per class.
    """


ScenarioKwargs = Mapping[str, Mapping[str, Any]]
"""`{scenario_name: {argument: value}}`: what the kit passes to scenarios that need (or accept) arguments."""


def runnable_scenarios(system: System, scenario_kwargs: ScenarioKwargs | None) -> dict[str, dict[str, Any]]:
    """Scenarios the kit can call, with the arguments given for them in `scenario_kwargs`.

    Scenarios like `from_arrays(Q, P, rho)` need user data; when only required arguments are missing
    they are skipped, not failed. Any other problem with the given arguments (an unknown name, a value
    of the wrong type) is the test's mistake and raises `ScenarioArgumentError`, as the scenario would.
    """
    out = {}
    for name in system.scenarios():
        kw = dict((scenario_kwargs or {}).get(name, {}))
        try:
            validate_scenario_kwargs(system, name, kw)
        except ScenarioArgumentError as err:
            if err.only_missing:
                continue
            raise
        out[name] = kw
    return out


class _States:
    """The named states the checks run on, built on first use: listing the checks (e.g. when pytest
    collects `parametrize_with_checks` cases) runs no scenario."""

    def __init__(
        self, system: System, given: Mapping[str, State] | None, scenario_kwargs: ScenarioKwargs | None
    ) -> None:
        self._system = system
        self._built: dict[str, State] | None = dict(given) if given is not None else None
        self._scenarios = runnable_scenarios(system, scenario_kwargs) if given is None else {}
        self.names: list[str] = list(given) if given is not None else [*self._scenarios, "random"]

    def get(self) -> dict[str, State]:
        if self._built is None:
            built = {name: self._system.initial_state(name, **kw) for name, kw in self._scenarios.items()}
            built["random"] = random_state(self._system)
            self._built = built
        return self._built


def _shape(t: Any) -> Any:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def state_problems(system: System, state: State) -> list[str]:
    """What makes `state` unfit for `system`: field names, the lattice size, rho's size `L * orbitals`
    and the dtypes (empty when it fits). Such a state comes from a scenario (or a test) that built it
    wrongly; rhs cannot be judged on it."""
    problems = []
    L, d = system.L, system.orbitals
    if tuple(state.fields) != tuple(system.field_names):
        problems.append(f"the state has fields {list(state.fields)}, the system declares field_names "
                        f"{list(system.field_names)}")
    batch = tuple(state.rho.shape[:-2])
    for name, t in state.fields.items():
        if tuple(t.shape) != (*batch, L):
            problems.append(f"field '{name}' has shape {tuple(t.shape)}; the system has L={L} sites, so it must be "
                            f"(*batch, L) = {(*batch, L)}")
        if t.is_complex():
            problems.append(f"field '{name}' is complex ({t.dtype}); classical fields are real")
    N = L * d
    if tuple(state.rho.shape[-2:]) != (N, N):
        n = state.rho.shape[-1]
        why = (f" (that is L x L: the orbital index is missing, rho must span L*d = {L}*{d} one-body states)"
               if d > 1 and n == L else "")
        problems.append(f"rho has shape {tuple(state.rho.shape)}; the system has L={L} sites and orbitals={d}, so it "
                        f"must be (*batch, L*d, L*d) = {(*batch, N, N)}{why}")
    if not state.rho.is_complex():
        problems.append(f"rho is real ({state.rho.dtype}); it must be complex")
    return problems


def _derivative_shape_hint(name: str, got: tuple[int, ...], want: tuple[int, ...], n_batch: int) -> str:
    """Why a derivative's shape may differ from its variable's, from the two shapes."""
    if got == want[n_batch:]:
        return (" (the batch axes are missing: rhs must act on every batch element, batched over the leading "
                "axes; look for indexing or a reduction over them)")
    if sorted(got) == sorted(want):
        return (f" (the same axes in another order: a transpose or permute in the computation of d{name}/dt moved "
                "the batch axes)")
    return ""


def rhs_problems(system: System, state: State) -> list[str]:
    """What is wrong with the structure of `rhs(state)` (not a `State`, other variables, shapes not those
    of the variables); empty when the other checks can run on it. `state` must fit the system."""
    d = system.rhs(state)
    if not isinstance(d, State):
        return [f"rhs returned a {type(d).__name__}, not a State (return State._raw(fields, drho) or State(...))"]
    if d.fields.keys() != state.fields.keys():
        return [f"rhs returned fields {list(d.fields)}, state has {list(state.fields)}"]
    problems = []
    n_batch = len(state.batch_shape)
    for name in state.names:
        a, b = state[name], d[name]
        if not isinstance(b, torch.Tensor):
            problems.append(f"d{name}/dt is a {type(b).__name__}, not a tensor")
        elif a.shape != b.shape:
            hint = _derivative_shape_hint(name, tuple(b.shape), tuple(a.shape), n_batch)
            problems.append(f"d{name}/dt has shape {tuple(b.shape)}, {name} has {tuple(a.shape)}{hint}")
        elif a.is_complex() != b.is_complex():  # integrating it would leave the state's space altogether
            problems.append(f"d{name}/dt has dtype {b.dtype}, {name} has {a.dtype}{_dtype_hint(name, b.dtype, a.dtype)}")
    return problems


def _require_runnable(system: System, state: State) -> None:
    """Skip a check that cannot run on this state: the state does not fit the system, or rhs returns a
    malformed derivative. The `rhs_shapes_dtypes` check of the same state fails with the details."""
    problems = state_problems(system, state) or rhs_problems(system, state)
    if problems:
        raise CheckSkipped(f"not run: {problems[0]}; the rhs_shapes_dtypes check of this state fails for it")


def _dtype_hint(name: str, got: torch.dtype, want: torch.dtype) -> str:
    if name == RHO and not got.is_complex:
        return " (drho/dt must be complex: -i[H, rho] is; was .real taken, or was it built in a real tensor?)"
    if name != RHO and got.is_complex:
        return (f" (a classical field's derivative must be real: take .real of the rho entries d{name}/dt uses, "
                "e.g. occupations Re rho_ii)")
    return (" (rhs must compute in the state's precision: look for a tensor created without dtype= or a "
            ".float()/.to() on the way)")


def check_rhs_shapes_dtypes(system: System, state: State, **_: Any) -> None:
    """The state fits the system; `rhs(state)` returns each derivative shaped and typed like its variable,
    finite; `energy(state)` is real and shaped like the batch; the graph names exactly the state's variables."""
    misfit = state_problems(system, state)
    assert not misfit, (
        "the test state does not fit the system: " + "; ".join(misfit)
        + " (the scenario, or the test, that built this state is wrong)"
    )
    problems = rhs_problems(system, state)
    assert not problems, "; ".join(problems)
    d = system.rhs(state)
    for name in state.names:
        a, b = state[name], d[name]
        assert a.dtype == b.dtype, f"d{name}/dt has dtype {b.dtype}, {name} has {a.dtype}{_dtype_hint(name, b.dtype, a.dtype)}"
        assert torch.isfinite(b).all(), f"d{name}/dt is not finite"  # complex: both parts finite
    e = system.energy(state)
    assert isinstance(e, torch.Tensor), f"energy(state) returned a {type(e).__name__}, not a tensor shaped like the batch"
    assert e.shape == state.batch_shape, f"energy shape {tuple(e.shape)} != batch shape {tuple(state.batch_shape)}"
    assert not e.is_complex(), "energy must be real"
    assert set(system.graph.variables) == set(state.names), f"graph variables {system.graph.variables} != {state.names}"


def check_rhs_real_matches_rhs(system: System, state: State, **_: Any) -> None:
    _require_runnable(system, state)
    d = system.rhs(state)
    df, dre, dim = system.rhs_real(dict(state.fields), state.rho.real, state.rho.imag)
    err = max(float((dre - d.rho.real).abs().amax()), float((dim - d.rho.imag).abs().amax()))
    for k in state.fields:
        err = max(err, float((df[k] - d.fields[k]).abs().amax()))
    assert err < 1e-12, f"rhs_real and rhs disagree by {err:.3e}"


def _flatten_batch(state: State) -> State:
    """The state with its batch axes flattened into one, `(n, L)` fields and `(n, L, L)` rho."""
    n_batch = len(state.batch_shape)
    return state.map(lambda t: t.reshape(-1, *t.shape[n_batch:]))


def check_batch_equivalence(system: System, state: State, **_: Any) -> None:
    _require_runnable(system, state)
    if not state.batch_shape:
        return
    flat = _flatten_batch(state)
    d_batch = system.rhs(flat)
    for i in range(flat.rho.shape[0]):
        d_one = system.rhs(flat.index(i))
        assert d_one.allclose(d_batch.index(i), rtol=1e-12, atol=1e-13), f"batched rhs differs from single rhs at {i}"
        e_one = system.energy(flat.index(i))
        assert torch.allclose(e_one, system.energy(flat)[i], rtol=1e-12, atol=1e-12), "batched energy differs"


def check_hermiticity_and_trace(system: System, state: State, dt: float, n_steps: int, tol: Tolerances, **_: Any) -> None:
    """Over `n_steps` of RK4, rho stays Hermitian and its trace stays constant.

    Both tolerances are relative to scales of order one for a physical state, each floored at 1: the
    largest `|rho_ij|` (at most 1 when rho's eigenvalues lie in [0, 1]) for Hermiticity, the initial
    `|Tr rho|` (the electron number) for the trace. The drift `Tr rho(t) - Tr rho(0)` is complex, so
    it includes any imaginary part (and `|Im Tr rho| <= L/2 * max |rho - rho^H|` anyway).
    """
    _require_runnable(system, state)
    save_every = max(1, n_steps // 10)
    while n_steps % save_every:  # simulate needs a divisor of n_steps
        save_every -= 1
    traj = simulate(system, state, dt, n_steps, save_every=save_every)
    herm = hermiticity_error(traj.rho)
    herm_scale = max(1.0, float(traj.rho.abs().amax()))
    drho = system.rhs(state).rho
    assert herm <= tol.hermiticity * herm_scale, (
        f"rho lost Hermiticity: max |rho - rho^H| = {herm:.3e} > {tol.hermiticity:.0e} * {herm_scale:.3g}"
        + _hermiticity_diagnosis(state.rho, drho)
    )
    tr = trace_of(traj.rho)
    tr_err = float((tr - tr[0]).abs().amax()) / max(1.0, float(tr[0].abs().amax()))
    assert tr_err <= tol.trace, (
        f"trace of rho drifted by {tr_err:.3e} (relative to the initial trace) > {tol.trace:.0e}"
        f"; Tr(drho/dt) = {complex(trace_of(drho).flatten()[trace_of(drho).abs().flatten().argmax()]):.3e} on the "
        "initial state, where any commutator -i[H, rho] is traceless: rhs adds a term that is not a commutator "
        "(a loss or gain of electrons)"
    )


def _hermiticity_diagnosis(rho: torch.Tensor, drho: torch.Tensor) -> str:
    """Where a loss of Hermiticity starts: the initial rho, or drho/dt on it."""
    rho_err = hermiticity_error(rho)
    if rho_err > 1e-12 * max(1.0, float(rho.abs().amax())):
        return (f"; the initial rho is itself not Hermitian (max |rho - rho^H| = {rho_err:.3e}): fix the scenario or "
                "state that built it")
    d_err = hermiticity_error(drho)
    return (f"; drho/dt is not Hermitian already on the initial (Hermitian) rho (max |drho/dt - drho/dt^H| = "
            f"{d_err:.3e}): rhs must return -i[H, rho] = -i(H rho - rho H) with a Hermitian H; a missing "
            "rho H term or a non-Hermitian H (gain/loss) does this")


def effective_hamiltonian(system: System, state: State) -> tuple[torch.Tensor, str]:
    """The one-body Hamiltonian `H` (`(*batch, L, L)`, rho's dtype) that should generate rho's flow,
    and a phrase saying where it came from.

    From the system's `one_body_hamiltonian(state)` hook when it has one; otherwise `H = dE/drho`
    by autograd. For a real `E` and a complex leaf rho, torch returns `G = dE/dRe(rho) + i dE/dIm(rho)`,
    so that `dE = Re Tr(G^H drho)`; for the Hermitian variations a density matrix can make, that is
    `Tr(H drho)` with `H = (G + G^H) / 2`. (Only this Hermitian part is defined: an energy written as
    `Re Tr(H rho)`, `Tr(H Re rho)` or with `Re rho_{i,i+1}` counted once per bond gives different `G`
    but the same `H`.) Raises `CheckSkipped` when the energy cannot be differentiated in rho.
    """
    rho = state.rho
    hook = getattr(system, "one_body_hamiltonian", None)
    if callable(hook):
        H = torch.as_tensor(hook(state)).to(dtype=rho.dtype, device=rho.device)
        assert H.shape == rho.shape, (
            f"one_body_hamiltonian(state) has shape {tuple(H.shape)}, rho has {tuple(rho.shape)}"
        )
        herm = hermiticity_error(H)
        assert herm <= 1e-12 * max(1.0, float(H.abs().amax())), (
            f"one_body_hamiltonian(state) is not Hermitian (max |H - H^H| = {herm:.3e})"
        )
        return H, "H from the system's one_body_hamiltonian(state)"
    leaf = rho.detach().clone().requires_grad_(True)
    fields = {k: v.detach() for k, v in state.fields.items()}
    reason = ""
    try:
        with torch.enable_grad():
            e = system.energy(State._raw(fields, leaf))
            if not (isinstance(e, torch.Tensor) and e.requires_grad):
                reason = "energy(state) is not connected to rho in torch's autograd graph"
            else:
                (g,) = torch.autograd.grad(e.sum(), leaf, allow_unused=True)
                if g is None:
                    reason = "autograd gives no gradient of energy(state) with respect to rho"
    except Exception as err:  # noqa: BLE001 - numpy inside energy, in-place ops on rho, ...: "not differentiable"
        reason = f"autograd through energy(state) failed ({type(err).__name__}: {err})"
    if reason:
        raise CheckSkipped(
            f"{reason}; cannot build H = dE/drho to compare rhs with -i[H, rho]. Make energy differentiable in "
            "torch or give the system a one_body_hamiltonian(state) method returning H"
        )
    g = g.detach()
    return 0.5 * (g + g.mH), "H = dE/drho (the Hermitian part of autograd's gradient of energy)"


def check_von_neumann_generator(system: System, state: State, tol: Tolerances, **_: Any) -> None:
    """`rhs(state).rho == -i [H, rho]` with `H` the one-body Hamiltonian (see `effective_hamiltonian`).

    Hermiticity, trace, energy conservation and RK4 order all hold for the mirror dynamics
    `+i [H, rho]` too; only comparing with the generator itself tells the two apart.
    """
    _require_runnable(system, state)
    H, source = effective_hamiltonian(system, state)
    rho = state.rho
    d = system.rhs(state).rho
    v = -1j * (H @ rho - rho @ H)
    err = float((d - v).abs().amax())
    mirror = float((d + v).abs().amax())
    scale = max(float(d.abs().amax()), float(v.abs().amax()), float(H.abs().amax()) * float(rho.abs().amax()))
    bound = tol.generator * scale
    if err <= bound:
        return
    if mirror <= bound:
        raise AssertionError(
            f"drho/dt != -i[H, rho] (max difference {err:.3e}) with {source}, but the opposite sign +i[H, rho] "
            f"matches (to {mirror:.3e}): the sign of the von Neumann equation is flipped"
        )
    raise AssertionError(
        f"drho/dt != -i[H, rho]: max difference {err:.3e} > {tol.generator:.0e} * {scale:.3g}, with {source} "
        f"(+i[H, rho] is off by {mirror:.3e}): rho's flow is not generated by the energy's one-body Hamiltonian"
    )


def _energy_drift(system: System, state: State, dt: float, T: float) -> float:
    n = round(T / dt)
    traj = simulate(system, state, dt, n, save_every=n)
    return float((system.energy(traj.index(-1)) - system.energy(traj.index(0))).abs().amax())


def _drift_converges(drifts: list[float], floor: float, tol: Tolerances) -> tuple[bool, list[float], list[float]]:
    """Whether drifts measured at dt, dt/2, dt/4 are those of a conserved quantity under RK4: at the
    round-off `floor` from the coarsest step, or falling with an order >= `tol.energy_order_min` (a pair
    whose finer drift reached the floor only bounds the order from below: no evidence against RK4).
    Returns the verdict, the drifts clipped at the floor and the observed orders."""
    if drifts[0] < floor:
        return True, drifts, []  # conserved to round-off at the coarsest step: nothing to measure
    clipped = [max(d, floor) for d in drifts]
    orders = observed_order(clipped)
    ok = any(o >= tol.energy_order_min or fine <= floor for o, fine in zip(orders, clipped[1:]))
    return ok, clipped, orders


def energy_rate(system: System, state: State) -> float | None:
    """`max |dE/dt|` at `state` along rhs, `<grad E, rhs(state)>` by autograd (fields, and rho through
    `Re Tr(G^H drho/dt)`): zero when rhs conserves energy. None when energy is not differentiable."""
    try:
        with torch.enable_grad():
            leaves = {k: v.detach().clone().requires_grad_(True) for k, v in state.variables().items()}
            rho = leaves.pop(RHO)
            e = system.energy(State._raw(dict(leaves), rho))
            if not (isinstance(e, torch.Tensor) and e.requires_grad):
                return None
            grads = torch.autograd.grad(e.sum(), [*leaves.values(), rho], allow_unused=True)
    except Exception:  # noqa: BLE001 - a numpy energy: no rate, the drift alone is reported
        return None
    d = system.rhs(state)
    rate = torch.zeros(state.batch_shape, dtype=torch.float64)
    for (name, _), g in zip([*leaves.items(), (RHO, rho)], grads):
        if g is not None:
            prod = (g.conj() * d[name]).real if g.is_complex() else g * d[name]
            rate = rate + prod.reshape(*state.batch_shape, -1).sum(-1).to(torch.float64)
    return float(rate.abs().max())


def _energy_rate_along(system: System, state: State, dt: float, n_steps: int) -> float | None:
    """The largest `|dE/dt|` along rhs (`energy_rate`) over a few states of the RK4 trajectory from `state`:
    at a single state it can vanish by accident (at rest, no force does work)."""
    every = max(1, n_steps // 4)
    while n_steps % every:
        every -= 1
    traj = simulate(system, state, dt, n_steps, save_every=every)
    rates = [energy_rate(system, traj.index(i)) for i in range(traj.rho.shape[0])]
    return None if any(r is None for r in rates) else max(rates)


def check_energy_drift_order(system: System, state: State, dt: float, n_steps: int, tol: Tolerances, **_: Any) -> None:
    """Over `T = dt * n_steps`, the energy drift of RK4 is at round-off or falls as `dt^4` (order at least
    `tol.energy_order_min`) when dt halves: the equations conserve `energy`. The message gives the
    instantaneous `dE/dt` along rhs, which tells equations that disagree with `energy` (nonzero) from
    dynamics RK4 cannot integrate to fourth order (zero)."""
    _require_runnable(system, state)
    T = dt * n_steps
    drifts = [_energy_drift(system, state, dt / 2**k, T) for k in range(3)]
    e0 = float(system.energy(state).abs().amax())
    floor = 1e-13 * max(1.0, e0) * n_steps * 4
    converged, drifts, orders = _drift_converges(drifts, floor, tol)
    if converged:
        return
    rate = _energy_rate_along(system, state, dt, n_steps)
    if rate is None:
        why = ("energy(state) is not conserved by rhs(state): the equations and the energy disagree (a term with "
               "another factor or sign in energy than in rhs) or rhs has a non-conservative term (friction, gain/loss)")
    elif rate > 1e-9 * max(1.0, e0):
        why = (f"energy(state) is not conserved by rhs(state): along the trajectory, dE/dt = <grad energy, rhs> "
               f"reaches {rate:.3e} (0 at every state for a conservative rhs). energy and rhs disagree: a term with another factor or sign "
               "in energy than in rhs (for fields dQ/dt = dE/dP and dP/dt = -dE/dQ, for rho -i[dE/drho, rho]), "
               "or rhs has a non-conservative term (friction, gain/loss)")
    else:
        why = (f"dE/dt = <grad energy, rhs> is at most {rate:.3e} along the trajectory (round-off), so rhs conserves "
               "energy but RK4 does not converge at fourth order: rhs is probably not smooth in the state (a sign, "
               "abs, clamp or branch)")
    raise AssertionError(
        f"energy drift {drifts} at dt={dt}, dt/2, dt/4 falls with order {orders}; expected ~4 (RK4): {why}"
    )


def _check_invariant_values(name: str, value: Any, state: State) -> torch.Tensor:
    assert isinstance(value, torch.Tensor), (
        f"invariants(state)['{name}'] is a {type(value).__name__}; return a tensor shaped (*batch, ...)"
    )
    batch = tuple(state.batch_shape)
    assert tuple(value.shape[: len(batch)]) == batch, (
        f"invariants(state)['{name}'] has shape {tuple(value.shape)}; its leading axes must be the batch shape "
        f"{batch} (one value, or one array, per state: compute it batched over the leading axes)"
    )
    assert not value.is_complex(), (
        f"invariants(state)['{name}'] is complex ({value.dtype}); declare real quantities (e.g. .real of a trace, |z|)"
    )
    assert bool(torch.isfinite(value).all()), f"invariants(state)['{name}'] is not finite on a valid state"
    return value.detach().to(torch.float64)


def check_invariants_conserved(system: System, state: State, dt: float, n_steps: int, tol: Tolerances,
                               **_: Any) -> None:
    """Every quantity `system.invariants(state)` declares is conserved by RK4 as by the energy check: its
    drift over `T = dt * n_steps` is at round-off (relative to the quantity's scale, floored at 1), as for
    a linear invariant which RK4 keeps exactly, or falls as `dt^4` when dt halves. Each must be real,
    finite and shaped `(*batch, ...)`. A system that declares none passes: nothing is claimed."""
    misfit = state_problems(system, state)
    if misfit:  # invariants(state) may not even compute on it
        raise CheckSkipped(f"not run: {misfit[0]}; the rhs_shapes_dtypes check of this state fails for it")
    first = system.invariants(state)
    if not first:
        return
    _require_runnable(system, state)
    assert isinstance(first, Mapping), f"invariants(state) returned a {type(first).__name__}; return a dict name -> tensor"
    inv0 = {k: _check_invariant_values(k, v, state) for k, v in first.items()}
    T = dt * n_steps
    drifts: dict[str, list[float]] = {k: [] for k in inv0}
    for k in range(3):
        n = n_steps * 2**k
        final = simulate(system, state, T / n, n, save_every=n).index(-1)
        inv = system.invariants(final)
        assert set(inv) == set(inv0), f"invariants() declares {sorted(inv0)} at t = 0 but {sorted(inv)} later"
        for name, v0 in inv0.items():
            v = _check_invariant_values(name, inv[name], final)
            assert v.shape == v0.shape, f"invariants(state)['{name}'] changed shape from {tuple(v0.shape)} to {tuple(v.shape)}"
            drifts[name].append(float((v - v0).abs().amax()) if v.numel() else 0.0)
    bad = []
    for name, v0 in inv0.items():
        scale = max(1.0, float(v0.abs().amax()) if v0.numel() else 0.0)
        floor = 1e-13 * scale * n_steps * 4
        ok, clipped, orders = _drift_converges(drifts[name], floor, tol)
        if not ok:
            bad.append(
                f"invariant '{name}' is not conserved by rhs: its drift {clipped} at dt={dt}, dt/2, dt/4 falls with "
                f"order {orders}; a conserved quantity drifts at round-off (a linear one: RK4 keeps it exactly) or "
                f"as dt^4 (order >= {tol.energy_order_min}). Either rhs breaks the symmetry behind it (e.g. a spin "
                f"length needs dS/dt = S x B, a rotation) or invariants(state)['{name}'] is not what the equations "
                "conserve"
            )
    assert not bad, "\n  ".join(bad)


def check_rk4_order(system: System, state: State, dt: float, n_steps: int, tol: Tolerances, **_: Any) -> None:
    _require_runnable(system, state)
    T = dt * n_steps
    ref_n = n_steps * 16
    ref = simulate(system, state, T / ref_n, ref_n, save_every=ref_n).index(-1)
    errs = []
    for k in range(3):
        n = n_steps * 2**k
        y = simulate(system, state, T / n, n, save_every=n).index(-1)
        errs.append(max(float((y[v] - ref[v]).abs().amax()) for v in state.names))
    if errs[0] < 1e-11:
        return  # the dynamics is too slow at this dt to measure an order above round-off
    orders = observed_order(errs)
    lo, hi = tol.order_window
    assert lo <= orders[-1] <= hi or lo <= orders[0] <= hi, f"RK4 global errors {errs} give orders {orders}, expected ~4"
    assert get_solver("rk4").order == 4


def _global_rng_states() -> tuple[Any, ...]:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _rngs_changed(before: tuple[Any, ...], after: tuple[Any, ...]) -> list[str]:
    """The global generators (torch's, numpy's, Python's) whose state differs between two snapshots."""
    changed = []
    if not torch.equal(before[0], after[0]):
        changed.append("torch (torch.randn/rand without generator=)")
    nb, na = before[1], after[1]
    if nb[0] != na[0] or not np.array_equal(nb[1], na[1]) or tuple(nb[2:]) != tuple(na[2:]):
        changed.append("numpy (np.random.*)")
    if before[2] != after[2]:
        changed.append("Python's random")
    return changed


def check_scenarios_deterministic(
    system: System, state: State, scenario_kwargs: Mapping[str, Mapping[str, Any]] | None = None, **_: Any
) -> None:
    """Every scenario the kit can call builds a state that fits the system, the same state on every call
    without touching the global random generators, with a Hermitian rho whose eigenvalues (occupations)
    lie in [0, 1], in float64 / complex128. The global generators are left as they were found."""
    saved = _global_rng_states()
    try:
        _scenarios_deterministic(system, scenario_kwargs)
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])


def _scenarios_deterministic(system: System, scenario_kwargs: Mapping[str, Mapping[str, Any]] | None) -> None:
    for name, kw in runnable_scenarios(system, scenario_kwargs).items():
        # Advance each global generator first, so a scenario that reseeds one cannot leave it where it was.
        torch.rand(1), np.random.random(), random.random()
        before = _global_rng_states()
        a = system.initial_state(name, **kw)
        touched = _rngs_changed(before, _global_rng_states())
        b = system.initial_state(name, **kw)
        misfit = state_problems(system, a)
        assert not misfit, f"scenario '{name}' builds a state that does not fit the system: " + "; ".join(misfit)
        seed_hint = ("draw random numbers from a generator seeded by the scenario's own arguments, e.g. "
                     "np.random.default_rng(seed) or torch.Generator().manual_seed(seed)")
        same = all(a[v].shape == b[v].shape for v in a.names) and a.allclose(b, rtol=0, atol=0)
        if not same:
            src = (f"it draws from the global {' and '.join(touched)} random generator" if touched else
                   "it draws from an unseeded generator or depends on something else that changes between calls")
            raise AssertionError(f"scenario '{name}' is not deterministic for {kw}: two calls gave different states; "
                                 f"{src}: {seed_hint}")
        assert not touched, (
            f"scenario '{name}' changes the global {' and '.join(touched)} random state (it draws from or reseeds "
            f"the global generator), so building a state shifts everyone else's random stream: {seed_hint}"
        )
        herm = hermiticity_error(a.rho)
        assert herm < 1e-12, f"scenario '{name}' gives a non-Hermitian rho ({herm:.3e})"
        ev = torch.linalg.eigvalsh(a.rho)
        assert float(ev.min()) > -1e-10 and float(ev.max()) < 1 + 1e-10, (
            f"scenario '{name}' gives rho with eigenvalues outside [0, 1]: [{float(ev.min())}, {float(ev.max())}]"
        )
        dtypes = {t.dtype for t in a.fields.values()}
        assert dtypes == {torch.float64} and a.rho.dtype == torch.complex128, (
            f"scenario '{name}' is not float64/complex128: fields {sorted(map(str, dtypes))}, rho {a.rho.dtype}"
        )


# -- the dependency graph against the rhs ---------------------------------------------------------
def _perturbation_basis(x: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis `(n, *x.shape)` of the perturbations a variable can take: the unit vectors
    of a site field, the Hermitian matrices (real diagonal units, symmetric and antisymmetric-imaginary
    pairs) of a pair matrix, as rho stays Hermitian."""
    if not x.is_complex():
        return torch.eye(x.numel(), dtype=x.dtype).reshape(-1, *x.shape)
    L = x.shape[-1]
    basis = []
    for i in range(L):
        for j in range(i, L):
            for part in ((1.0,) if i == j else (2**-0.5, 1j * 2**-0.5)):
                b = torch.zeros(L, L, dtype=x.dtype)
                b[i, j] = part
                b[j, i] = part.conjugate() if isinstance(part, complex) else part
                basis.append(b)
    return torch.stack(basis)


def _blind_directions(views: list[Any], x: torch.Tensor, basis: torch.Tensor, L: int | None = None) -> torch.Tensor:
    """Coefficients `(n, k)` (orthonormal columns) of the perturbations of `x` that every view in `views`
    maps to zero at first order: what a derivative reading `x` only through `views` cannot respond to.
    `L` (the number of sites) lets a blocked view see rho's orbitals (`View.__call__`)."""
    n = basis.shape[0]
    if not views:
        return torch.eye(n, dtype=torch.float64)

    def seen(p: torch.Tensor) -> torch.Tensor:
        x_p = x + torch.tensordot(p.to(basis.dtype), basis, dims=1)
        outs = [v(x_p, L) for v in views]
        return torch.cat([(torch.view_as_real(o) if o.is_complex() else o).reshape(-1).to(torch.float64) for o in outs])

    jac = torch.autograd.functional.jacobian(seen, torch.zeros(n, dtype=torch.float64), vectorize=True)
    _, sv, vh = torch.linalg.svd(jac, full_matrices=True)
    rank = int((sv > 1e-9 * float(sv.max())).sum()) if sv.numel() and float(sv.max()) > 0 else 0
    return vh[rank:].T


class _Probe:
    """Perturbs the variables of one unbatched state and measures how each derivative responds."""

    def __init__(self, system: System, state: State, generator: torch.Generator) -> None:
        self.system, self.state, self.generator = system, state, generator
        self.bases = {v: _perturbation_basis(state[v]) for v in state.names}

    def blind(self, views: list[Any], source: str) -> torch.Tensor:
        return _blind_directions(views, self.state[source], self.bases[source], self.state.L)

    def response(self, source: str, null: torch.Tensor, target: str) -> float | None:
        """Largest `|d(rhs[target])/d(source) . delta|` over two random unit perturbations `delta` within
        `null` (central differences); None when `null` is empty."""
        if null.shape[1] == 0:
            return None
        x = self.state[source]
        eps = 1e-6 * max(1.0, float(x.abs().amax()))
        out = 0.0
        for _ in range(2):
            p = null @ torch.randn(null.shape[1], dtype=torch.float64, generator=self.generator)
            delta = torch.tensordot((p / p.norm()).to(self.bases[source].dtype), self.bases[source], dims=1)
            plus = self.system.rhs(self._moved(source, x + eps * delta))[target]
            minus = self.system.rhs(self._moved(source, x - eps * delta))[target]
            out = max(out, float((plus - minus).abs().amax()) / (2 * eps))
        return out

    def _moved(self, source: str, value: torch.Tensor) -> State:
        if source == RHO:
            return State._raw(dict(self.state.fields), value)
        return State._raw({**self.state.fields, source: value}, self.state.rho)


def _single_states(states: Mapping[str, State], per_state: int = 2) -> Iterator[tuple[str, State]]:
    """Up to `per_state` unbatched elements of each state, named `state[i]` when it has several."""
    for name, st in states.items():
        flat = _flatten_batch(st)
        for i in range(min(per_state, flat.rho.shape[0])):
            yield (name if flat.rho.shape[0] == 1 else f"{name}[{i}]"), flat.index(i)


def check_graph_matches_rhs(
    system: System, state: State, tol: Tolerances, states: Mapping[str, State] | None = None, **_: Any
) -> None:
    """The declared graph is what `rhs` depends on: the surrogate sees only the declared inputs.

    On (up to two batch elements of) every test state, each variable is perturbed by central differences
    in random directions its declared views for a target cannot see (every direction when the target
    does not declare it): a derivative that moves depends on something undeclared, a failure naming
    target and source. Conversely each declared input is perturbed in directions only it sees (invisible
    to the target's other views of the same variable); one that never moves the derivative on any test
    state gets an `UnusedDependencyWarning`. "Moves" means a response above `tol.dependency` times the
    largest response of that derivative (floored at 1). Views must be torch-differentiable (as they are
    for training); an identity-like view of a variable leaves no direction to test against it.
    """
    graph = system.graph
    gen = torch.Generator().manual_seed(0)
    given = states if states is not None else {"state": state}
    tested = {k: st for k, st in given.items() if not (state_problems(system, st) or rhs_problems(system, st))}
    if not tested:
        raise CheckSkipped(f"not run: no test state fits the system with a well-formed rhs ({sorted(given)}); the "
                           "rhs_shapes_dtypes checks fail for them")
    undeclared: dict[tuple[str, str], tuple[float, str]] = {}  # (target, source) -> largest response, where
    used: dict[tuple[str, int], float] = {}  # (target, input index) -> largest response / bound

    for sname, st in _single_states(tested):
        probe = _Probe(system, st, gen)
        for t in graph.variables:
            deps = graph.inputs(t)
            largest = max(probe.response(v, probe.blind([], v), t) or 0.0 for v in graph.variables)
            bound = tol.dependency * max(1.0, largest)
            for v in graph.variables:  # perturbed where the declared views of v cannot see
                r = probe.response(v, probe.blind([d.resolved_view() for d in deps if d.source == v], v), t)
                if r is not None and r > bound and r > undeclared.get((t, v), (0.0, ""))[0]:
                    undeclared[(t, v)] = (r, sname)
            for i, d in enumerate(deps):  # perturbed where only this input sees
                others = [o.resolved_view() for j, o in enumerate(deps) if j != i and o.source == d.source]
                r = probe.response(d.source, probe.blind(others, d.source), t)
                if r is not None:
                    used[(t, i)] = max(used.get((t, i), 0.0), r / bound)
    silent: dict[str, list[str]] = {}
    for t in graph.variables:
        for i, d in enumerate(graph.inputs(t)):
            if (t, i) in used and used[(t, i)] <= 1.0:
                silent.setdefault(t, []).append(d.label())
                warnings.warn(
                    f"d{t}/dt never responded to its declared input {d.label()} on the test states "
                    f"{sorted(tested)}: the graph gives the surrogate an input the equations do not use",
                    UnusedDependencyWarning,
                    stacklevel=2,
                )
    if undeclared:
        lines = []
        for (t, source), (r, sname) in sorted(undeclared.items()):
            seen_as = [d.label() for d in graph.inputs(t) if d.source == source]
            how = (f"beyond its declared {', '.join(seen_as)} (perturbed where those views see nothing)"
                   if seen_as else f"which the graph does not declare as an input of {t}")
            lines.append(f"d{t}/dt depends on {source}, {how}: response {r:.3e} on state '{sname}'")
        for t in sorted({t for t, _ in undeclared}):
            if t in silent:
                lines.append(f"d{t}/dt never responded to its declared {', '.join(silent[t])}: declared in place of "
                             f"what rhs reads (a view of the wrong variable)?")
        lines.append("Declare each dependency in the system's graph (through a view that sees what rhs reads: "
                     "'matrix' sees all of rho) or remove it from rhs")
        raise AssertionError("rhs depends on inputs the graph does not declare:\n  " + "\n  ".join(lines))


def check_observables_declared(system: System, state: State, **_: Any) -> None:
    """Every observable the System declares is valid, has the declared shape, is finite and real, and
    is batched: evaluating a batch equals evaluating each state on its own (metrics and figures rely on it)."""
    from .observables import check_observables

    misfit = state_problems(system, state)
    if misfit:
        raise CheckSkipped(f"not run: {misfit[0]}; the rhs_shapes_dtypes check of this state fails for it")
    observables = check_observables(system.observables())
    assert observables, f"{system.name}: observables() declares nothing; diagnostics and figures would be empty"
    flat = _flatten_batch(state)
    for obs in observables:
        out = obs(flat)  # checks the shape against the declaration
        assert not out.is_complex(), f"observable {obs.name!r} is complex; declare real quantities (e.g. |F_q|^2)"
        assert bool(torch.isfinite(out).all()), f"observable {obs.name!r} is not finite on a valid state"
        one = obs(flat.index(slice(0, 1)))
        assert torch.allclose(out[:1], one, rtol=1e-12, atol=1e-12), \
            f"observable {obs.name!r} of a batch differs from the same state evaluated alone"


CHECKS: dict[str, Callable[..., None]] = {
    "rhs_shapes_dtypes": check_rhs_shapes_dtypes,
    "rhs_real_matches_rhs": check_rhs_real_matches_rhs,
    "batch_equivalence": check_batch_equivalence,
    "hermiticity_and_trace": check_hermiticity_and_trace,
    "von_neumann_generator": check_von_neumann_generator,
    "energy_drift_order": check_energy_drift_order,
    "rk4_order": check_rk4_order,
    "invariants_conserved": check_invariants_conserved,
    "observables_declared": check_observables_declared,
    "scenarios_deterministic": check_scenarios_deterministic,
    "graph_matches_rhs": check_graph_matches_rhs,
}

_PER_STATE = {"rhs_shapes_dtypes", "rhs_real_matches_rhs", "batch_equivalence", "hermiticity_and_trace",
              "von_neumann_generator", "energy_drift_order", "rk4_order", "invariants_conserved",
              "observables_declared"}


def _run_check(fn: Callable[..., None], system: System, states: _States, name: str | None, kw: dict[str, Any]) -> None:
    built = states.get()
    fn(system, built[name] if name is not None else next(iter(built.values())), states=built, **kw)


def iter_checks(
    system: System,
    states: Mapping[str, State] | None = None,
    *,
    scenario_kwargs: ScenarioKwargs | None = None,
    dt: float = 0.1,
    n_steps: int = 100,
    tolerances: Tolerances = Tolerances(),
) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield `(check_id, run)` pairs; `run()` raises AssertionError on failure and `CheckSkipped` (which
    pytest reports as a skip) when the check cannot run on this system. The default states are built
    when the first `run()` needs them. Every check gets `state` (its own, or the first for checks that
    run once) and `states` (all of them)."""
    lazy = _States(system, states, scenario_kwargs)
    kw = {"dt": dt, "n_steps": n_steps, "tol": tolerances, "scenario_kwargs": scenario_kwargs}
    for cname, fn in CHECKS.items():
        if cname in _PER_STATE:
            for sname in lazy.names:
                yield f"{cname}[{sname}]", functools.partial(_run_check, fn, system, lazy, sname, kw)
        else:
            yield cname, functools.partial(_run_check, fn, system, lazy, None, kw)


def check_system(system: System, states: Mapping[str, State] | None = None, **kwargs: Any) -> list[str]:
    """Run every conformance check; raise AssertionError listing all failures, else return the ids of
    the checks that passed. Skipped checks are in neither: a `ConformanceSkipWarning` names them and why."""
    failures, passed, skipped = [], [], []
    for cid, run in iter_checks(system, states, **kwargs):
        try:
            run()
            passed.append(cid)
        except CheckSkipped as why:
            skipped.append(f"{cid}: {why}")
        except AssertionError as err:
            failures.append(f"{cid}: {err}")
    if skipped:
        warnings.warn(
            f"{len(skipped)} conformance check(s) skipped for {system!r}:\n" + "\n".join(skipped),
            ConformanceSkipWarning,
            stacklevel=2,
        )
    if failures:
        raise AssertionError(f"{len(failures)} conformance check(s) failed for {system!r}:\n" + "\n".join(failures))
    return passed


# -- pytest ------------------------------------------------------------------------------------------
def _for(value: Any, system: System) -> Any:
    """A `parametrize_with_checks` option: the same value for every system, or a function of the system."""
    return value(system) if callable(value) else value


def system_id(system: System) -> str:
    """A short test id: the system's name and the parameters that differ from their defaults (e.g.
    `holstein(L=8,boundary=open)`), since a full repr makes unwieldy pytest ids."""
    fields = type(system.params).model_fields
    shown = [f"{k}={v}" for k, v in system.params.model_dump().items()
             if fields[k].is_required() or v != fields[k].get_default(call_default_factory=True)]
    return f"{system.name}({','.join(shown)})"


def parametrize_with_checks(
    systems: Sequence[System],
    *,
    expected_failed_checks: Mapping[str, str] | Callable[[System], Mapping[str, str]] | None = None,
    scenario_kwargs: ScenarioKwargs | Callable[[System], ScenarioKwargs | None] | None = None,
    states: Mapping[str, State] | Callable[[System], Mapping[str, State] | None] | None = None,
    dt: float = 0.1,
    n_steps: int = 100,
    tolerances: Tolerances = Tolerances(),
) -> Any:
    """A pytest `parametrize` mark with one case per (system, check), as scikit-learn's
    `parametrize_with_checks` gives per (estimator, check)::

        @parametrize_with_checks([MyChain(L=8), MyChain(L=8, boundary="open")], n_steps=30)
        def test_conformance(system, check):
            check()

    The case id is `system_id(system)` and the check id (`rk4_order[random]`), so a failure names both.
    `expected_failed_checks` maps a check name (every state) or a check id (one state) to the reason
    it fails: those cases are `xfail(strict=True, raises=AssertionError)`, so a check that starts to
    pass, or fails by crashing, is reported. An unknown key is an error (a typo would silently expect
    nothing). `scenario_kwargs`, `states` and `expected_failed_checks` are values for every system or
    functions of the system; the other options are those of `iter_checks`. States are built when the
    first case runs, not at collection.
    """
    import pytest  # the kit itself does not need pytest

    params = []
    for system in systems:
        expected = dict(_for(expected_failed_checks, system) or {})
        checks = list(iter_checks(system, _for(states, system), scenario_kwargs=_for(scenario_kwargs, system),
                                  dt=dt, n_steps=n_steps, tolerances=tolerances))
        known = set(CHECKS) | {cid for cid, _ in checks}
        unknown = sorted(set(expected) - known)
        if unknown:
            raise ValueError(f"expected_failed_checks for {system_id(system)} names unknown checks {unknown}; "
                             f"known: {sorted(known)}")
        for cid, run in checks:
            reason = expected.get(cid, expected.get(cid.split("[", 1)[0]))
            marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)] if reason else []
            params.append(pytest.param(system, run, id=f"{system_id(system)}-{cid}", marks=marks))
    return pytest.mark.parametrize(("system", "check"), params)


# -- a seconds-long end-to-end run -------------------------------------------------------------------------
def smoke_run_config(
    config: Mapping[str, Any], output_dir: Any, *, L: int | None = None, n_traj: int = 4, n_model_steps: int = 24,
    scenario_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A copy of a run config (the mapping YAML gives) shrunk to a `qcsurrogate run` of a few seconds on a CPU.

    For a plugin's tests: its shipped example goes through every stage (data, training, evaluation,
    figures) with the example's own system, scenario, time step and model options, on `n_traj`
    trajectories of `n_model_steps` steps, `L` sites when given, width-4 networks trained for 4 steps.
    `scenario_kwargs` override the example's scenario arguments (e.g. a shorter soliton on a smaller ring).
    """
    cfg = copy.deepcopy(dict(config))
    cfg.update(output_dir=str(output_dir), device="cpu")
    data = cfg["data"]
    if L is not None:
        data["system"].setdefault("params", {})["L"] = L
    data["scenario"].setdefault("kwargs", {}).update(n_traj=n_traj, **dict(scenario_kwargs or {}))
    data["simulation"] = {**data["simulation"], "n_model_steps": n_model_steps}
    cfg["split"] = {"val_fraction": 0.25, "test_fraction": 0.25, "seed": 0}
    cfg.setdefault("model", {})["width"] = 4
    cfg["training"] = {**cfg.get("training", {}), "steps": 4, "batch_size": 4, "warmup_steps": 1, "log_every": 2,
                       "val_every": 2, "checkpoint_every": 2,
                       "objective": {"unroll": {"max_steps": 2, "start_fraction": 0.5}}}
    horizon = max(2, n_model_steps // 4)
    cfg["evaluation"] = {**cfg.get("evaluation", {}), "horizon": horizon, "starts": [0, n_model_steps - horizon - 1],
                         "climate": {**cfg.get("evaluation", {}).get("climate", {}), "horizon": n_model_steps // 2,
                                     "starts": [0], "max_lag": max(2, n_model_steps // 6)}}
    return cfg
