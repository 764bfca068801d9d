"""Electron spin and charge densities (the plugin's views) and the observables of the spin texture.

Batched over leading axes. Sites are at integer positions j = 0 .. L-1; rho is site-major,
row/column `2 i + a` with a = 0 (up), 1 (down). Definitions and checks in the plugin's README.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qcsurrogate.observables import fourier
from qcsurrogate.state import rho_blocks


def onsite_blocks(rho: torch.Tensor) -> torch.Tensor:
    """The 2x2 spin blocks rho_ii of a `(*batch, 2L, 2L)` matrix, `(*batch, L, 2, 2)`: `[..., i, a, b] = rho[2i+a, 2i+b]`."""
    L = rho.shape[-1] // 2
    return torch.diagonal(rho_blocks(rho, L), dim1=-4, dim2=-3).movedim(-1, -3)


def spin_density(rho: torch.Tensor) -> torch.Tensor:
    """`s_i = tr(sigma rho_ii)`, `(*batch, 2L, 2L) -> (*batch, 3, L)` real (components x, y, z on axis -2).

    With rho_{(ia),(jb)} = <c_jb^dag c_ia>: s^x = 2 Re rho_{i up, i dn}, s^y = -2 Im rho_{i up, i dn},
    s^z = rho_{i up, i up} - rho_{i dn, i dn}. The electron spin on site i is s_i / 2 (|s_i| <= 1).
    """
    b = onsite_blocks(rho)
    updn = b[..., 0, 1]
    return torch.stack((2 * updn.real, -2 * updn.imag, (b[..., 0, 0] - b[..., 1, 1]).real), dim=-2)


def spin_density_x(rho: torch.Tensor) -> torch.Tensor:
    """`s^x_i = 2 Re rho_{(i up),(i dn)}`, `(*batch, L)`."""
    return 2 * onsite_blocks(rho)[..., 0, 1].real


def spin_density_y(rho: torch.Tensor) -> torch.Tensor:
    """`s^y_i = -2 Im rho_{(i up),(i dn)}`, `(*batch, L)`."""
    return -2 * onsite_blocks(rho)[..., 0, 1].imag


def spin_density_z(rho: torch.Tensor) -> torch.Tensor:
    """`s^z_i = rho_{(i up),(i up)} - rho_{(i dn),(i dn)}`, `(*batch, L)`."""
    b = onsite_blocks(rho)
    return (b[..., 0, 0] - b[..., 1, 1]).real


def charge_density(rho: torch.Tensor) -> torch.Tensor:
    """`n_i = tr rho_ii` (both spins), `(*batch, L)`."""
    b = onsite_blocks(rho)
    return (b[..., 0, 0] + b[..., 1, 1]).real


def vector_structure_factor(v: torch.Tensor, q: Sequence[float]) -> torch.Tensor:
    """`sum_a |sum_j v^a_j e^{-iqj}|^2 / L` of a vector field `(*batch, 3, L)` -> `(*batch, len(q))`."""
    L = v.shape[-1]
    return fourier(v, q).abs().pow(2).sum(-2) / L


def neighbour_pairs(v: torch.Tensor, boundary: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`(v_i, v_{i+1})` over the bonds of the chain, each `(*batch, 3, n_bonds)` (L bonds on a ring, L-1 open)."""
    nxt = torch.roll(v, -1, -1)
    if boundary == "open":
        return v[..., :-1], nxt[..., :-1]
    return v, nxt


def spiral_pitch(S: torch.Tensor, boundary: str) -> torch.Tensor:
    """Mean angle between neighbouring spins, `atan2(|S_i x S_j|, S_i . S_j)` in [0, pi] (radians per site).

    A planar spiral S_j = (cos qj, sin qj, 0) with 0 <= q <= pi has pitch q; a ferromagnet 0, a Neel state pi.
    """
    a, b = neighbour_pairs(S, boundary)
    cross = torch.linalg.cross(a, b, dim=-2).norm(dim=-2)
    return torch.atan2(cross, (a * b).sum(-2)).mean(-1)


def vector_chirality(S: torch.Tensor, boundary: str) -> torch.Tensor:
    """`|(1/n_bonds) sum_i S_i x S_{i+1}|`: sin q for a planar spiral of pitch q in any plane, 0 for collinear spins.

    The magnitude of the mean vector chirality, so it is invariant under global spin rotations (the
    isotropic exchange conserves the total spin but lets a spiral's plane precess; its z component
    alone would follow the plane, and a handedness is not rotation invariant for a planar spiral).
    """
    a, b = neighbour_pairs(S, boundary)
    return torch.linalg.cross(a, b, dim=-2).mean(-1).norm(dim=-1)
