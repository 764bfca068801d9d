"""Named physical observables that a System declares (`System.observables()`).

An `Observable` is a function of a `State`, batched over the state's leading axes, that returns
either one number per state (`kind="scalar"`, shaped like the batch) or a spectrum over an axis of
given values (`kind="spectrum"`, shaped batch + (n_axis,), e.g. a structure factor over wave vectors
q). Diagnostics (`evaluation.metrics.physics_diagnostics`) and figures
(`evaluation.figures.observables_figure`) use what the System declares instead of assuming an order
parameter.

The default for any System on a 1D lattice (`default_observables`) is the connected static structure
factor of each classical field,

    S_f(q) = (1/L) |sum_j (f_j - fbar) e^{-i q j}|^2,   q = 2 pi k / L,  k = 0 .. floor(L/2),

with fbar the field's mean over the sites of that state. Subtracting it changes nothing at q != 0
and sets S_f(0) = 0: a uniform background (a lattice contracted by its mean bond order, a mean
displacement) is not order, and without the subtraction it made q = 0 "the dominant wave vector".
`structure_factor` itself is the plain one;
sites at integer positions j = 0 .. L-1. The fields are real, so S_f(-q) = S_f(q) and the half
zone 0 <= q <= pi holds every distinct value (keeping both q and -q would make "the dominant q" a
round-off coin toss between two equal peaks). Over the full zone S obeys Parseval's sum rule
sum_{k=0}^{L-1} S_f(2 pi k / L) = sum_j f_j^2, it is invariant under lattice translations on a
periodic chain, and S_f(pi) = L m^2 with m = (1/L) sum_j (-1)^j f_j the staggered mean (even L).
It describes every field generically; a System that knows its order parameters declares them itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

import torch

from .state import State

if TYPE_CHECKING:
    from .system import System

Kind = Literal["scalar", "spectrum"]


@dataclass(frozen=True)
class Observable:
    """A named observable: `fn(state)` shaped `state.batch_shape` (scalar) or `batch + (len(axis),)` (spectrum).

    `label` names the quantity on plots (e.g. "S_Q(q)"), `unit` its unit ("" for dimensionless or
    when the System's units are implied), `axis` the values of the spectrum's last axis (wave vectors
    in radians per lattice spacing for a structure factor) and `axis_name` their symbol.
    """

    name: str
    fn: Callable[[State], torch.Tensor] = field(repr=False, compare=False)
    doc: str = ""
    label: str = ""
    unit: str = ""
    kind: Kind = "scalar"
    axis: tuple[float, ...] | None = None
    axis_name: str = "q"

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"observable name must be an identifier (it is a metrics.json key), got {self.name!r}")
        if self.kind not in ("scalar", "spectrum"):
            raise ValueError(f"observable {self.name!r}: kind must be 'scalar' or 'spectrum', got {self.kind!r}")
        if self.kind == "spectrum":
            if not self.axis:
                raise ValueError(f"spectrum observable {self.name!r} needs its axis values")
            object.__setattr__(self, "axis", tuple(float(a) for a in self.axis))
        elif self.axis is not None:
            raise ValueError(f"scalar observable {self.name!r} takes no axis")
        if not self.label:
            object.__setattr__(self, "label", self.name)

    def __call__(self, state: State) -> torch.Tensor:
        """Evaluate on `state` and check the shape against the declaration."""
        out = self.fn(state)
        want = tuple(state.batch_shape) + ((len(self.axis),) if self.axis is not None else ())
        if tuple(out.shape) != want:
            raise ValueError(
                f"observable {self.name!r} ({self.kind}) returned shape {tuple(out.shape)} for a state of batch "
                f"shape {tuple(state.batch_shape)}; expected {want}"
            )
        return out


def check_observables(observables: Iterable[Observable]) -> tuple[Observable, ...]:
    """The declarations as a tuple, refusing anything but `Observable`s and duplicate names."""
    obs = tuple(observables)
    seen: set[str] = set()
    for o in obs:
        if not isinstance(o, Observable):
            raise TypeError(f"observables() must return Observable instances, got {type(o).__name__}")
        if o.name in seen:
            raise ValueError(f"observable name {o.name!r} is declared twice")
        seen.add(o.name)
    return obs


# -- structure factors -------------------------------------------------------------------------------
def wavevectors(L: int) -> tuple[float, ...]:
    """The distinct wave vectors of a real field on L sites: q = 2 pi k / L, k = 0 .. floor(L/2)."""
    return tuple(2 * math.pi * k / L for k in range(L // 2 + 1))


def fourier(x: torch.Tensor, q: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """F(q) = sum_j x_j e^{-i q j} over the last axis (sites j = 0 .. L-1), shaped x.shape[:-1] + (len(q),)."""
    L = x.shape[-1]
    real = x.real.dtype if x.is_complex() else (x.dtype if x.is_floating_point() else torch.float64)
    qt = torch.as_tensor(q, dtype=real, device=x.device)
    j = torch.arange(L, dtype=real, device=x.device)
    angle = torch.outer(j, qt)  # (L, n_q)
    phase = torch.complex(torch.cos(angle), -torch.sin(angle))
    return x.to(phase.dtype) @ phase


def structure_factor(x: torch.Tensor, q: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """S(q) = |sum_j x_j e^{-i q j}|^2 / L over the last axis; q defaults to `wavevectors(L)`."""
    L = x.shape[-1]
    F = fourier(x, wavevectors(L) if q is None else q)
    return F.abs().pow(2) / L


def connected_structure_factor(x: torch.Tensor, q: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """`structure_factor` of `x` minus its mean over the sites (the last axis): fluctuations only."""
    return structure_factor(x - x.mean(-1, keepdim=True), q)


def default_observables(system: System) -> tuple[Observable, ...]:
    """`S_<field>(q)`, connected, for every classical field of a 1D-lattice System, over q in [0, pi], and for
    each declared vector field `S_<vector>(q)`, the connected structure factor summed over its components
    (rotation invariant, e.g. the spin structure factor S_S(q) = sum_a S_{S_a}(q))."""
    q = wavevectors(system.L)

    def make(name: str) -> Observable:
        return Observable(
            name=f"S_{name}",
            fn=lambda s: connected_structure_factor(s[name], q),
            doc=f"connected static structure factor of {name}: |sum_j ({name}_j - mean) e^(-iqj)|^2 / L "
                "(default observable)",
            label=f"S_{name}(q)",
            kind="spectrum",
            axis=q,
        )

    def make_vector(name: str, components: tuple[str, ...]) -> Observable:
        return Observable(
            name=f"S_{name}",
            fn=lambda s: sum(connected_structure_factor(s[c], q) for c in components),
            doc=f"connected static structure factor of the vector {name} = ({', '.join(components)}): "
                f"sum over components of |sum_j ({name}_j - mean) e^(-iqj)|^2 / L (default observable)",
            label=f"S_{name}(q)",
            kind="spectrum",
            axis=q,
        )

    vectors = getattr(system, "vector_fields", {}) or {}
    return (*(make(n) for n in system.field_names),
            *(make_vector(v, tuple(c)) for v, c in vectors.items() if v not in system.field_names))


# -- measuring a spectrum on data ------------------------------------------------------------------
def dominant_index(spectrum: torch.Tensor) -> int:
    """Index of the largest entry of the spectrum averaged over every leading (time, batch) axis.

    Non-finite entries are ignored; ties go to the first (smallest-q) index.
    """
    m = spectrum.detach().reshape(-1, spectrum.shape[-1]).double()
    m = torch.where(torch.isfinite(m), m, torch.nan).nanmean(0)
    return int(torch.nan_to_num(m, nan=-math.inf).argmax())


def format_over_pi(q: float, max_denominator: int = 64) -> str:
    """A wave vector in units of pi: 0, π, 3π/4, π/2; otherwise two decimals ("0.31π")."""
    r = q / math.pi
    f = Fraction(r).limit_denominator(max_denominator)
    if abs(float(f) - r) > 1e-9:
        return f"{r:.2f}π"
    if f == 0:
        return "0"
    num = "" if f.numerator == 1 else ("-" if f.numerator == -1 else str(f.numerator))
    return f"{num}π" if f.denominator == 1 else f"{num}π/{f.denominator}"
