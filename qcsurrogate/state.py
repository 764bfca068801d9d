"""The hybrid quantum-classical state: named real site fields plus one complex density matrix.

A `State` is the single currency between Systems, solvers, files and surrogates, so it carries only
what every hybrid system has and supports exactly the arithmetic an explicit Runge-Kutta step needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

RHO = "rho"

REAL_DTYPE = torch.float64
COMPLEX_DTYPE = torch.complex128

_COMPLEX_OF = {torch.float64: torch.complex128, torch.float32: torch.complex64}
_REAL_OF = {v: k for k, v in _COMPLEX_OF.items()}


def complex_dtype_of(real: torch.dtype) -> torch.dtype:
    """The complex dtype paired with a real one (float64 -> complex128)."""
    if real not in _COMPLEX_OF:
        raise TypeError(f"unsupported real dtype {real}; use float32 or float64")
    return _COMPLEX_OF[real]


def real_dtype_of(cplx: torch.dtype) -> torch.dtype:
    """The real dtype paired with a complex one (complex128 -> float64)."""
    if cplx not in _REAL_OF:
        raise TypeError(f"unsupported complex dtype {cplx}; use complex64 or complex128")
    return _REAL_OF[cplx]


def _as_tensor(x: Any, device: torch.device | str | None) -> torch.Tensor:
    """`x` as a tensor on `device` (None: where it is), dtype unchanged (the caller converts)."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device)
    arr = np.asarray(x)
    t = torch.from_numpy(np.array(arr, copy=True, order="C"))  # a copy: never alias the caller's array
    return t.to(device=device)


def rho_blocks(rho: torch.Tensor, L: int) -> torch.Tensor:
    """A site-major `(*batch, L*d, L*d)` matrix as `(*batch, L, L, d, d)` site blocks (a strided view)."""
    N = rho.shape[-1]
    if N % L:
        raise ValueError(f"a {N} x {N} matrix is not L*d x L*d for L={L}")
    d = N // L
    return rho.unflatten(-1, (L, d)).unflatten(-3, (L, d)).transpose(-3, -2)


def rho_from_blocks(blocks: torch.Tensor) -> torch.Tensor:
    """The inverse of `rho_blocks`: `(*batch, L, L, d, d)` -> `(*batch, L*d, L*d)` (contiguous)."""
    L, d = blocks.shape[-3], blocks.shape[-1]
    return blocks.transpose(-3, -2).reshape(*blocks.shape[:-4], L * d, L * d)


class NonFiniteError(FloatingPointError):
    """A NaN or Inf where the physics has none (data, a loss, a gradient, a rollout); the message says where."""


def nonfinite_variables(state: State) -> list[str]:
    """The names of the variables of `state` holding a NaN or an Inf (empty when all are finite)."""
    return [name for name, v in state.variables().items() if not bool(torch.isfinite(v).all())]


class State:
    """Classical fields `(*batch, L)` (real) and a density matrix `rho` `(*batch, L*d, L*d)` (complex).

    `d` is the number of orbitals per site (`orbitals`: 1 for spinless electrons, 2 for spin-1/2);
    rho is stored as one matrix in site-major order, row/column `i * d + a` for site `i`, orbital `a`,
    so matrix algebra (commutators, traces, spectra) needs no reshaping; `blocks` gives the
    `(*batch, L, L, d, d)` form. Accepts numpy arrays or torch tensors. By default fields become float64 and rho complex128,
    the precision ground truth needs; pass `dtype=torch.float32` for single precision.
    """

    __slots__ = ("fields", "rho")

    def __init__(
        self,
        fields: Mapping[str, Any],
        rho: Any,
        *,
        dtype: torch.dtype | None = REAL_DTYPE,
        device: torch.device | str | None = None,
    ) -> None:
        if not fields:
            raise ValueError("a State needs at least one classical field")
        if RHO in fields:
            raise ValueError(f"'{RHO}' is reserved for the density matrix, not a field name")
        rho_t = _as_tensor(rho, device)
        if dtype is None:
            cdtype = rho_t.dtype if rho_t.is_complex() else COMPLEX_DTYPE
        else:
            cdtype = complex_dtype_of(dtype)
        rho_t = rho_t.to(cdtype)
        rdtype = real_dtype_of(cdtype)
        out: dict[str, torch.Tensor] = {}
        for name, value in fields.items():
            t = _as_tensor(value, rho_t.device)
            if t.is_complex():
                raise TypeError(f"field '{name}' is complex; classical fields must be real")
            out[str(name)] = t.to(rdtype)
        self.fields = out
        self.rho = rho_t
        self._check_shapes()

    # -- construction helpers -------------------------------------------------------------------
    @classmethod
    def _raw(cls, fields: dict[str, torch.Tensor], rho: torch.Tensor) -> State:
        """Build without conversion or checks (internal hot path)."""
        s = object.__new__(cls)
        s.fields = fields
        s.rho = rho
        return s

    def _check_shapes(self) -> None:
        if self.rho.ndim < 2 or self.rho.shape[-1] != self.rho.shape[-2]:
            raise ValueError(f"rho must be shaped (*batch, L*d, L*d); got {tuple(self.rho.shape)}")
        first = next(iter(self.fields.values()))
        batch = tuple(self.rho.shape[:-2])
        expected = (*batch, first.shape[-1] if first.ndim == len(batch) + 1 else -1)
        for name, t in self.fields.items():
            if tuple(t.shape) != expected:
                raise ValueError(
                    f"field '{name}' has shape {tuple(t.shape)}; expected (*batch, L) = {expected} to match rho "
                    f"{tuple(self.rho.shape)} and the first field"
                )
        L, N = expected[-1], int(self.rho.shape[-1])
        if L < 1 or N % L:
            raise ValueError(f"rho is {N} x {N}, not L*d x L*d for L={L} sites (the fields' last axis) and an "
                             f"integer number d of orbitals per site")

    # -- introspection --------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Variable names in canonical order: fields first, then 'rho'."""
        return (*self.fields, RHO)

    @property
    def batch_shape(self) -> torch.Size:
        return self.rho.shape[:-2]

    @property
    def L(self) -> int:
        """The number of lattice sites (the fields' last axis)."""
        return int(next(iter(self.fields.values())).shape[-1])

    @property
    def orbitals(self) -> int:
        """Orbitals per site `d`: rho is `(L*d) x (L*d)`."""
        return int(self.rho.shape[-1]) // self.L

    @property
    def blocks(self) -> torch.Tensor:
        """rho as `(*batch, L, L, d, d)`: `blocks[..., i, j, a, b] = rho[..., i*d + a, j*d + b]` (a view, no copy)."""
        return rho_blocks(self.rho, self.L)

    @property
    def dtype(self) -> torch.dtype:
        """The real dtype of the fields (rho is its complex partner)."""
        return real_dtype_of(self.rho.dtype)

    @property
    def device(self) -> torch.device:
        return self.rho.device

    def __getitem__(self, name: str) -> torch.Tensor:
        if name == RHO:
            return self.rho
        try:
            return self.fields[name]
        except KeyError:
            raise KeyError(f"no variable '{name}'; this state has {list(self.names)}") from None

    def variables(self) -> dict[str, torch.Tensor]:
        """All variables by name, rho included."""
        return {**self.fields, RHO: self.rho}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.variables().items())
        return f"State({shapes}, dtype={self.rho.dtype}, device={self.device})"

    # -- elementwise maps -----------------------------------------------------------------------
    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> State:
        """Apply `fn` to every tensor (fields and rho) and wrap the results."""
        return State._raw({k: fn(v) for k, v in self.fields.items()}, fn(self.rho))

    def zip_map(self, other: State, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> State:
        self._check_compatible(other)
        return State._raw({k: fn(v, other.fields[k]) for k, v in self.fields.items()}, fn(self.rho, other.rho))

    def _check_compatible(self, other: State) -> None:
        if not isinstance(other, State):
            raise TypeError(f"expected a State, got {type(other).__name__}")
        if other.fields.keys() != self.fields.keys():
            raise ValueError(f"states have different fields: {list(self.fields)} vs {list(other.fields)}")

    def __add__(self, other: State) -> State:
        return self.zip_map(other, torch.add)

    def __sub__(self, other: State) -> State:
        return self.zip_map(other, torch.sub)

    def __mul__(self, a: float) -> State:
        if isinstance(a, State):
            raise TypeError("State * State is not defined; scale by a number")
        return self.map(lambda t: t * a)

    __rmul__ = __mul__

    def __truediv__(self, a: float) -> State:
        return self.map(lambda t: t / a)

    def __neg__(self) -> State:
        return self.map(torch.neg)

    def axpy(self, a: float, x: State) -> State:
        """self + a * x, the one fused operation Runge-Kutta stages need."""
        self._check_compatible(x)
        return State._raw(
            {k: torch.add(v, x.fields[k], alpha=a) for k, v in self.fields.items()},
            torch.add(self.rho, x.rho, alpha=a),
        )

    # -- batch and device handling ----------------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> State:
        cd = complex_dtype_of(dtype) if dtype is not None else None
        return State._raw(
            {k: v.to(device=device, dtype=dtype) for k, v in self.fields.items()},
            self.rho.to(device=device, dtype=cd),
        )

    def index(self, idx: Any) -> State:
        """Index the leading (batch or time) axes of every variable alike: `state.index(0)`, `state.index(slice(0, 4))`."""
        return self.map(lambda t: t[idx])

    def clone(self) -> State:
        return self.map(torch.clone)

    def detach(self) -> State:
        return self.map(torch.Tensor.detach)

    @staticmethod
    def stack(states: Iterable[State], dim: int = 0) -> State:
        """Stack states along a new leading axis (time or batch)."""
        states = list(states)
        if not states:
            raise ValueError("cannot stack an empty sequence of states")
        first = states[0]
        for s in states[1:]:
            first._check_compatible(s)
        return State._raw(
            {k: torch.stack([s.fields[k] for s in states], dim) for k in first.fields},
            torch.stack([s.rho for s in states], dim),
        )

    @staticmethod
    def cat(states: Iterable[State], dim: int = 0) -> State:
        states = list(states)
        first = states[0]
        return State._raw(
            {k: torch.cat([s.fields[k] for s in states], dim) for k in first.fields},
            torch.cat([s.rho for s in states], dim),
        )

    def numpy(self) -> dict[str, np.ndarray]:
        """All variables as numpy arrays (copied to CPU)."""
        return {k: v.detach().cpu().numpy() for k, v in self.variables().items()}

    def allclose(self, other: State, rtol: float = 1e-10, atol: float = 1e-12) -> bool:
        self._check_compatible(other)
        # Compare by name: two states may list the same fields in a different order.
        return all(torch.allclose(v, other[k], rtol=rtol, atol=atol) for k, v in self.variables().items())
