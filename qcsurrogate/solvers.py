"""Fixed-step explicit solvers and `simulate`, the ground-truth integrator.

The solver is separate from the equation (a System's `rhs`): any System runs under any solver here.
RK4 is the reference; Euler and midpoint exist so convergence-order tests have something to compare.
"""

from __future__ import annotations

import logging
import math
import sys
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from .state import NonFiniteError, State, nonfinite_variables
from .system import System

RHS = Callable[[State], State]
log = logging.getLogger("qcsurrogate.simulate")


@dataclass(frozen=True)
class ExplicitRK:
    """An explicit Runge-Kutta method given by its Butcher tableau."""

    name: str
    order: int
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]

    def step(self, f: RHS, y: State, dt: float) -> State:
        ks: list[State] = []
        for row in self.a:
            yi = y
            for aij, kj in zip(row, ks):
                if aij:
                    yi = yi.axpy(aij * dt, kj)
            ks.append(f(yi))
        out = y
        for bi, ki in zip(self.b, ks):
            if bi:
                out = out.axpy(bi * dt, ki)
        return out

    def step_tuple(
        self, f: Callable[[Sequence[torch.Tensor]], Sequence[torch.Tensor]], y: Sequence[torch.Tensor], dt: float
    ) -> tuple[torch.Tensor, ...]:
        """The same step on a flat tuple of tensors (what compiled kernels trace)."""
        ks: list[Sequence[torch.Tensor]] = []
        for row in self.a:
            yi = list(y)
            for aij, kj in zip(row, ks):
                if aij:
                    yi = [u + (aij * dt) * k for u, k in zip(yi, kj)]
            ks.append(f(yi))
        out = list(y)
        for bi, ki in zip(self.b, ks):
            if bi:
                out = [u + (bi * dt) * k for u, k in zip(out, ki)]
        return tuple(out)


EULER = ExplicitRK("euler", 1, ((),), (1.0,))
MIDPOINT = ExplicitRK("midpoint", 2, ((), (0.5,)), (0.0, 1.0))
RK4 = ExplicitRK("rk4", 4, ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6))

SOLVERS: dict[str, ExplicitRK] = {s.name: s for s in (EULER, MIDPOINT, RK4)}


def get_solver(name: str | ExplicitRK) -> ExplicitRK:
    if isinstance(name, ExplicitRK):
        return name
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver '{name}'; available: {sorted(SOLVERS)}") from None


class TrajectorySink(Protocol):
    """Receives saved snapshots chunk by chunk, each a State with a leading time axis."""

    def append(self, chunk: State) -> None: ...


def _progress(total: int, enabled: bool | None, desc: str):
    if enabled is None:
        enabled = total >= 2000 and sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)


class _CompiledStepper:
    """`steps_per_call` RK steps on the System's real-arithmetic rhs, traced by torch.compile into fused kernels.

    Built through `_compiled_stepper`, which caches it, so repeated `simulate(..., compile=True)` calls
    trace once. Each stepper owns a private copy of its traced function's code object: dynamo keeps its
    cache of graphs on the code object, so with one shared code object every system, dt and shape would
    add a guarded entry to the same cache, and past `torch._dynamo.config.recompile_limit` (8) a
    `fullgraph=True` compile fails hard (e.g. on the ninth value of a parameter sweep).
    """

    def __init__(
        self, system: System, method: ExplicitRK, dt: float, field_names: Sequence[str], steps_per_call: int
    ) -> None:
        names = tuple(field_names)

        def f(y: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
            fields = dict(zip(names, y[: len(names)]))
            dfields, dre, dim = system.rhs_real(fields, y[-2], y[-1])
            return (*(dfields[n] for n in names), dre, dim)

        def step(*y: torch.Tensor) -> tuple[torch.Tensor, ...]:
            for _ in range(steps_per_call):  # unrolled when traced
                y = method.step_tuple(f, y, dt)
            return tuple(y)

        own = types.FunctionType(step.__code__.replace(), step.__globals__, step.__name__, None, step.__closure__)
        self.system = system  # held, so the id() in the cache key cannot be reused while the entry lives
        self.names = names
        self.steps_per_call = steps_per_call
        self.n_calls = 0  # calls of the compiled function (for tests and benchmarks)
        self.step = torch.compile(own, dynamic=False, fullgraph=True)

    def __call__(self, y: State) -> State:
        """Advance `y` by `steps_per_call` steps."""
        flat = (*(y.fields[n] for n in self.names), y.rho.real.contiguous(), y.rho.imag.contiguous())
        out = self.step(*flat)
        self.n_calls += 1
        return State._raw(dict(zip(self.names, out[:-2])), torch.complex(out[-2], out[-1]))


# Compiled steppers by (system identity and params, solver, dt, fields, steps per call, device, dtype,
# shape, torch threads). Shapes are static (dynamic=False), so a new shape is a new trace anyway; the
# thread count is read when Inductor generates its OpenMP code, so it is part of what was compiled.
# Entries hold their System, so an id() in a key always names a live object; the least recently used
# entry is dropped past `_STEPPER_CACHE_SIZE`, so the cache cannot grow without bound.
_STEPPER_CACHE: OrderedDict[tuple, _CompiledStepper] = OrderedDict()
_STEPPER_CACHE_SIZE = 16


def _compiled_stepper(
    system: System, method: ExplicitRK, dt: float, y: State, steps_per_call: int = 1
) -> _CompiledStepper:
    """The cached `_CompiledStepper` for this system, solver, step and state layout (built on a miss)."""
    key = (
        id(system), system.params.model_dump_json(), method, float(dt), tuple(system.field_names),
        int(steps_per_call), str(y.rho.device), y.dtype, tuple(y.rho.shape), torch.get_num_threads(),
    )  # fmt: skip
    stepper = _STEPPER_CACHE.get(key)
    if stepper is not None and stepper.system is system:
        _STEPPER_CACHE.move_to_end(key)
        return stepper
    stepper = _CompiledStepper(system, method, dt, system.field_names, steps_per_call)
    _STEPPER_CACHE[key] = stepper
    while len(_STEPPER_CACHE) > _STEPPER_CACHE_SIZE:
        _STEPPER_CACHE.popitem(last=False)
    return stepper


class _FiniteCheck:
    """Stops an integration that produced a NaN or an Inf, naming the first snapshot and variable: a step
    beyond the solver's stability would otherwise fill a file with them and report success."""

    def __init__(self, dt: float, save_every: int, solver: str) -> None:
        self.dt, self.save_every, self.solver = dt, save_every, solver
        self.seen = 0  # snapshots checked so far (t = 0 is snapshot 0)

    def __call__(self, chunk: State) -> None:
        n = int(chunk.rho.shape[0])
        if chunk.rho.device.type == "meta":  # shapes only, no values to check
            self.seen += n
            return
        bad = nonfinite_variables(chunk)
        if bad:
            ok = torch.ones(n, dtype=torch.bool)
            for name in bad:
                v = chunk.variables()[name]
                v = torch.view_as_real(v) if v.is_complex() else v
                ok &= torch.isfinite(v.reshape(n, -1)).all(dim=1).cpu()
            first = self.seen + int((~ok).nonzero()[0])
            step = first * self.save_every
            raise NonFiniteError(
                f"the integration became non-finite by step {step} (t = {step * self.dt:g} after the start) in "
                f"{', '.join(bad)}: dt = {self.dt:g} is probably beyond {self.solver}'s stability; try a smaller dt")
        self.seen += n


def _hand_over(sink: TrajectorySink, saved: list[State], check: _FiniteCheck) -> list[State]:
    """Stack the held snapshots, check them, let go of them before the sink's copies, append; a fresh list."""
    chunk = State.stack(saved)
    saved.clear()  # the snapshots now live only in `chunk`: one copy fewer while the sink converts
    check(chunk)
    sink.append(chunk)
    return []


def simulate(
    system: System,
    state0: State,
    dt: float,
    n_steps: int,
    save_every: int = 1,
    *,
    solver: str | ExplicitRK = "rk4",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    sink: TrajectorySink | None = None,
    chunk_size: int = 256,
    progress: bool | None = None,
    compile: bool | str = "auto",
    steps_per_call: int = 1,
    threads: int | str | None = "auto",
) -> State:
    """Integrate `system` from `state0` with a fixed step and return the saved trajectory.

    The result has a leading time axis of `n_steps // save_every + 1` snapshots (t = 0 included).
    With a `sink`, snapshots are handed over in chunks of `chunk_size` and only the final state is
    returned (shape of `state0`), so memory does not grow with `n_steps`. `compile=True` fuses each
    step with torch.compile over `System.rhs_real` (worth it for long runs; tracing takes seconds, once
    per system, solver, dt and state shape in a process: compiled steppers are cached). With `compile`,
    `steps_per_call` RK steps are unrolled into each compiled call (fewer Python round trips per step,
    tracing time grows about linearly); it must divide `save_every`, and is ignored without `compile`.

    Defaults take the fast path where it is safe (rules in `qcsurrogate.execution`, logged at INFO on the
    "qcsurrogate.simulate" logger): `compile="auto"` compiles on CPU when the run would take at least
    ~30 s eagerly (the tracing would not pay for itself in shorter runs), falling back to eager with a
    warning if the system's rhs cannot be traced; `threads="auto"` runs on 1 torch thread on CPU for
    the call (restored after: use processes, not threads, for more cores); `threads=None` keeps torch's
    setting. Compiled and eager results agree to round-off, not bit for bit.
    """
    if not dt > 0 or not math.isfinite(dt):
        raise ValueError(f"dt must be a positive finite number, got {dt}")
    if n_steps < 0 or save_every < 1:
        raise ValueError(f"need n_steps >= 0 and save_every >= 1, got {n_steps}, {save_every}")
    if n_steps % save_every:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of save_every ({save_every})")
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    if isinstance(steps_per_call, bool) or not isinstance(steps_per_call, int) or steps_per_call < 1:
        raise ValueError(f"steps_per_call must be an integer >= 1, got {steps_per_call!r}")
    if compile is True and save_every % steps_per_call:
        raise ValueError(f"steps_per_call ({steps_per_call}) must divide save_every ({save_every})")
    missing = set(system.field_names) - set(state0.fields)
    if missing:
        raise ValueError(f"state lacks field(s) {sorted(missing)} required by system '{system.name}'")
    method = get_solver(solver)
    y = state0.to(device=device, dtype=dtype or state0.dtype)
    from .execution import resolve_compile, resolve_threads

    n_traj = max(1, int(y.batch_shape.numel()))
    auto_compile = compile == "auto"
    compile, why_compile = resolve_compile(compile, y.rho.device, int(y.rho.shape[-1]), n_traj, n_steps)  # cost: the L*d matrix
    n_threads, why_threads = resolve_threads(threads, y.rho.device)
    if compile and save_every % steps_per_call:
        raise ValueError(f"steps_per_call ({steps_per_call}) must divide save_every ({save_every})")
    if auto_compile or threads == "auto":
        log.info("simulate %s: %s; %s", system.name, why_compile, why_threads)
    previous_threads = torch.get_num_threads()
    if n_threads is not None and n_threads != previous_threads:
        torch.set_num_threads(n_threads)
    try:
        return _integrate(system, method, y, dt, n_steps, save_every, sink, chunk_size, progress, compile,
                          auto_compile, steps_per_call)
    finally:
        if torch.get_num_threads() != previous_threads:
            torch.set_num_threads(previous_threads)


def _integrate(
    system: System, method: ExplicitRK, y: State, dt: float, n_steps: int, save_every: int,
    sink: TrajectorySink | None, chunk_size: int, progress: bool | None, compile: bool, auto_compile: bool,
    steps_per_call: int,
) -> State:
    """The stepping loop of `simulate` (arguments checked and resolved there)."""
    eager: Callable[[State], State] = lambda s: method.step(system.rhs, s, dt)  # noqa: E731
    stride = steps_per_call if compile else 1
    step = _compiled_stepper(system, method, dt, y, steps_per_call) if compile else eager
    if compile and auto_compile and n_steps >= stride:
        try:  # the first call traces: a System whose rhs cannot be traced runs eagerly instead
            with torch.no_grad():
                step(y)
        except Exception as err:  # noqa: BLE001 - torch.compile raises many types
            warnings.warn(f"compile: auto could not trace {system.name}'s rhs ({type(err).__name__}: {err}); "
                          "integrating eagerly", RuntimeWarning, stacklevel=3)
            stride, step = 1, eager

    saved: list[State] = [y]
    check = _FiniteCheck(dt, save_every, method.name)
    bar = _progress(n_steps, progress, f"{system.name} {method.name}")
    try:
        with torch.no_grad():
            if sink is not None and len(saved) >= chunk_size:  # chunk_size == 1: t = 0 is a chunk of its own
                saved = _hand_over(sink, saved, check)
            for i in range(stride, n_steps + 1, stride):  # each call of `step` advances `stride` steps
                y = step(y)
                if i % save_every == 0:
                    saved.append(y)
                    if sink is not None and len(saved) >= chunk_size:
                        saved = _hand_over(sink, saved, check)
                if bar is not None and (i - bar.n >= 64 or i == n_steps):
                    bar.update(i - bar.n)
            if sink is not None:
                if saved:
                    _hand_over(sink, saved, check)
                return y
            # Stacked under no_grad too, or an input that requires grad would link the whole trajectory to it.
            out = State.stack(saved)
            check(out)
            return out
    finally:
        if bar is not None:
            bar.close()
