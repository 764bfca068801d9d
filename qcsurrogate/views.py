"""Views: named maps from a variable to the quantity a derivative actually depends on.

Views are a registered kind, like systems and surrogates: the core's own (below) are registered by
the core's builtin plugin, a plugin's through its `register_views` hook, and the registry rejects a
name registered twice. This module holds only the `View` type, the core's views and the seam through
which names are resolved: graphs (graph.py) and surrogates look views up with `get_view`, which asks
the lookup the registry installs when it is imported (``import qcsurrogate`` imports it). So graph.py
never imports the registry, and no plugin has to register anything when its module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from .state import rho_blocks, rho_from_blocks

Kind = Literal["site", "pair"]
"""`site`: a 1D array over sites `(*batch, L)`; `pair`: a matrix over site pairs, `(*batch, L*d, L*d)` with
`d` orbitals per site (site-major, like rho; `(*batch, L, L)` when d = 1)."""


@dataclass(frozen=True)
class View:
    """A named map from a variable to the quantity a derivative actually depends on.

    `fn` maps a batched tensor to a batched tensor and must accept the float32 / complex64 tensors
    surrogates use; it is differentiated through during training.

    A pair variable with `d` orbitals per site is the `(*batch, L*d, L*d)` matrix. A `blocked` view's
    `fn` receives it as `(*batch, L, L, d, d)` site blocks instead (`state.rho_blocks`), so a reduction
    to sites (the occupation `n_i = sum_a rho_{ia,ia}`) is written once for every d; calling it needs
    the number of sites `L`, which the caller knows from the state's fields. A blocked view's pair
    output is returned as blocks too and turned back into the matrix. Non-blocked views get the matrix
    as it is (the views of systems with one orbital per site, written before orbitals existed).
    """

    name: str
    input_kind: Kind
    output_kind: Kind
    fn: Callable[[torch.Tensor], torch.Tensor]
    doc: str = ""
    blocked: bool = False

    def __post_init__(self) -> None:
        kinds = get_args(Kind)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a view needs a non-empty name, got {self.name!r}")
        for attr in ("input_kind", "output_kind"):
            if getattr(self, attr) not in kinds:
                raise ValueError(f"view '{self.name}': {attr} must be one of {kinds}, got {getattr(self, attr)!r}")

    def __call__(self, x: torch.Tensor, L: int | None = None) -> torch.Tensor:
        """The view of `x`; `L` (the number of sites) is needed by a blocked view of a pair variable.

        Without `L` a blocked view takes `x` as one orbital per site (`L = x.shape[-1]`): what callers
        written before orbitals existed pass, and right for them; callers that know the state pass L."""
        if not (self.blocked and self.input_kind == "pair"):
            return self.fn(x)
        y = self.fn(rho_blocks(x, int(x.shape[-1]) if L is None else L))
        return rho_from_blocks(y) if self.output_kind == "pair" else y


def _occupations(b: torch.Tensor) -> torch.Tensor:
    """n_i = sum_a Re b_{ii,aa} of `(*batch, L, L, d, d)` blocks."""
    return torch.diagonal(torch.diagonal(b, dim1=-4, dim2=-3), dim1=-3, dim2=-2).real.sum(-1)


def _bond(b: torch.Tensor) -> torch.Tensor:
    """sum_a b_{i,i+1,a,a} (wrapping at the end) of `(*batch, L, L, d, d)` blocks: the nearest-neighbour
    bond elements traced over orbitals (spin-summed for spin-1/2)."""
    diag = torch.diagonal(torch.roll(b, -1, dims=-3), dim1=-4, dim2=-3)  # (*batch, d, d, L)
    return torch.diagonal(diag, dim1=-3, dim2=-2).sum(-1)


def _spin_blocks(b: torch.Tensor) -> torch.Tensor:
    """The on-site 2x2 spin blocks `(*batch, 2, 2, L)` of `(*batch, L, L, 2, 2)` blocks (spin-1/2 electrons)."""
    if b.shape[-1] != 2:
        raise ValueError(f"the spin density views need 2 orbitals per site (spin up, down), got {b.shape[-1]}")
    return torch.diagonal(b, dim1=-4, dim2=-3)


_PAULI_T = {  # sigma^a transposed, so that tr(sigma^a B) = sum_bc (sigma^a)^T_bc B_bc
    "x": ((0, 1), (1, 0)),
    "y": ((0, 1j), (-1j, 0)),
    "z": ((1, 0), (0, -1)),
}


def _spin_bond(b: torch.Tensor, axis: str) -> torch.Tensor:
    """tr(sigma^a rho_{i,i+1}) per bond (wrapping at the end), complex `(*batch, L)`, from spin-1/2 blocks."""
    if b.shape[-1] != 2:
        raise ValueError(f"the spin bond views need 2 orbitals per site (spin up, down), got {b.shape[-1]}")
    bond = torch.diagonal(torch.roll(b, -1, dims=-3), dim1=-4, dim2=-3)  # (*batch, 2, 2, L): rho_{i,i+1} blocks
    pauli_t = torch.tensor(_PAULI_T[axis], dtype=bond.dtype, device=bond.device)
    return (pauli_t[..., None] * bond).sum((-3, -2))


def _spin_x(b: torch.Tensor) -> torch.Tensor:
    return 2 * _spin_blocks(b)[..., 0, 1, :].real


def _spin_y(b: torch.Tensor) -> torch.Tensor:
    return -2 * _spin_blocks(b)[..., 0, 1, :].imag


def _spin_z(b: torch.Tensor) -> torch.Tensor:
    s = _spin_blocks(b)
    return (s[..., 0, 0, :] - s[..., 1, 1, :]).real


CORE_VIEWS: tuple[View, ...] = (
    View("identity", "site", "site", lambda x: x, "the site field itself"),
    View("matrix", "pair", "pair", lambda x: x, "the full pair matrix itself"),
    View(
        "diagonal",
        "pair",
        "site",
        _occupations,
        "real part of the diagonal of a pair matrix summed over orbitals (site occupations n_i = sum_a rho_{ia,ia})",
        blocked=True,
    ),
    View("bond_real", "pair", "site", lambda b: _bond(b).real,
         "Re sum_a x_{ia,i+1 a} (e.g. bond order)", blocked=True),
    View("bond_imag", "pair", "site", lambda b: _bond(b).imag,
         "Im sum_a x_{ia,i+1 a} (e.g. bond current)", blocked=True),
    # Spin-1/2 electrons (2 orbitals per site, up then down): s_i = tr(sigma rho_ii), the electron spin is s_i / 2.
    View("spin_density_x", "pair", "site", _spin_x,
         "electron spin density s^x_i = 2 Re rho_{(i up),(i dn)} (2 orbitals per site: spin up, down)", blocked=True),
    View("spin_density_y", "pair", "site", _spin_y,
         "electron spin density s^y_i = -2 Im rho_{(i up),(i dn)} (2 orbitals per site: spin up, down)", blocked=True),
    View("spin_density_z", "pair", "site", _spin_z,
         "electron spin density s^z_i = rho_{(i up),(i up)} - rho_{(i dn),(i dn)} (2 orbitals per site)", blocked=True),
    *(View(f"spin_bond_{part}_{axis}", "pair", "site", (lambda b, a=axis, f=fn: f(_spin_bond(b, a))),
           f"{part} part of tr(sigma^{axis} rho_(i,i+1)), the spin-resolved bond (2 orbitals per site)", blocked=True)
      for part, fn in (("real", torch.real), ("imag", torch.imag)) for axis in "xyz"),
)
"""The views every installation has (registered by the core's builtin plugin)."""

CORE_REDUCING_VIEWS = ("diagonal", "bond_real", "bond_imag")
"""Pair -> site views every installation has; what a 'state' integrator reads besides the graph's own
views (never plugin views a graph does not name, so a model's shape cannot depend on what is installed)."""

SPIN_REDUCING_VIEWS = (*(f"spin_density_{a}" for a in "xyz"), *(f"spin_bond_{p}_{a}" for p in ("real", "imag")
                                                                for a in "xyz"))
"""What a 'state' integrator also reads of a spin-1/2 rho (2 orbitals per site): with the orbital-summed
views these are every real number of the on-site and nearest-neighbour 2x2 blocks (a 2x2 block is
spanned by 1 and the Pauli matrices), so a spin block sees the spin currents its O(dt^2) step needs."""


def reducing_views(orbitals: int) -> tuple[str, ...]:
    """The core's pair -> site views a 'state' integrator reads of a rho with `orbitals` per site."""
    return CORE_REDUCING_VIEWS + (SPIN_REDUCING_VIEWS if orbitals == 2 else ())

_CORE: dict[str, View] = {v.name: v for v in CORE_VIEWS}

ViewLookup = Callable[[], Mapping[str, View]]
"""Returns every registered view by name; the registry installs one with `set_view_lookup`."""

def _core_only() -> Mapping[str, View]:
    return _CORE


_lookup: ViewLookup = _core_only  # until the registry installs itself


def set_view_lookup(lookup: ViewLookup) -> None:
    """Install where view names resolve (the registry calls this once, when it is imported)."""
    global _lookup
    _lookup = lookup


def get_view(name: str) -> View:
    """The registered view called `name` (the core's own resolve without building the registry)."""
    if name in _CORE:
        return _CORE[name]
    views = _lookup()
    try:
        return views[name]
    except KeyError:
        raise KeyError(f"unknown view '{name}'; registered views: {sorted(views)}") from None


def available_views() -> list[str]:
    """Names of every registered view, sorted."""
    return sorted(_lookup())
