"""Order parameters of the dimerised ring and the positions of its domain walls (solitons).

All functions are batched over leading axes; the bond field u has entry i on bond (i, i+1 mod L), so
positions are in units of the bond index (one lattice spacing per bond). Definitions and checks in
the plugin's README ("Observables").
"""

from __future__ import annotations

import torch


def _stagger(L: int, like: torch.Tensor) -> torch.Tensor:
    sign = torch.ones(L, dtype=like.dtype, device=like.device)
    sign[1::2] = -1
    return sign


def bond_order(rho: torch.Tensor) -> torch.Tensor:
    """`b_i = Re rho_{i,i+1 mod L}`, `(*batch, L, L) -> (*batch, L)` (the core's 'bond_real' view)."""
    return torch.diagonal(torch.roll(rho, shifts=-1, dims=-1), dim1=-2, dim2=-1).real


def dimerization(u: torch.Tensor) -> torch.Tensor:
    """`(1/L) sum_i (-1)^i u_i`: the signed q = pi order parameter (u0 of the dimerised ring; ~0 with walls)."""
    return (u * _stagger(u.shape[-1], u)).mean(-1)


def local_dimerization(u: torch.Tensor) -> torch.Tensor:
    """`d_i = (-1)^i (2 u_i - u_{i-1} - u_{i+1}) / 4`: the staggered part of u smoothed over three bonds.

    The [1, 2, 1] / 4 average of the staggered field (-1)^i u_i removes the uniform part of u exactly
    (it is staggered after the sign flip), so d_i = +-u0 deep in either dimerisation domain whatever the
    compression, and d changes sign at a domain wall. On an odd ring (-1)^i has a defect at bond 0 | L-1:
    there d is antiperiodic (d_L = -d_0), which `wall_positions` accounts for.
    """
    lap = 2 * u - torch.roll(u, 1, -1) - torch.roll(u, -1, -1)
    return 0.25 * lap * _stagger(u.shape[-1], u)


def dimerization_amplitude(u: torch.Tensor) -> torch.Tensor:
    """`(1/L) sum_i |d_i|`: the dimerisation whatever its sign pattern (u0 for a clean domain, less with walls)."""
    return local_dimerization(u).abs().mean(-1)


def wall_crossings(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sign changes of d between bond i and i+1 (cyclically): `(position, direction, steepness)`, each (*batch, L).

    `position` is i + d_i / (d_i - d_{i+1}) (linear interpolation, mod L), `direction` +1 where d rises
    through zero (a kink), -1 where it falls (an antikink), 0 where d keeps its sign; `steepness` is
    |d_i - d_{i+1}|, 0 where there is no crossing.
    """
    L = u.shape[-1]
    d = local_dimerization(u)
    nxt = torch.roll(d, -1, -1)
    if L % 2:  # antiperiodic across the seam of (-1)^i
        nxt = torch.cat([nxt[..., :-1], -nxt[..., -1:]], -1)
    crosses = (d * nxt < 0) | ((d == 0) & (nxt != 0))
    diff = d - nxt
    frac = torch.where(crosses, d / torch.where(crosses, diff, torch.ones_like(diff)), torch.zeros_like(d))
    position = torch.remainder(torch.arange(L, dtype=u.dtype, device=u.device) + frac, L)
    direction = torch.where(crosses, torch.sign(nxt - d), torch.zeros_like(d))
    steepness = torch.where(crosses, diff.abs(), torch.zeros_like(d))
    return position, direction, steepness


def wall_position(u: torch.Tensor, direction: int = 0) -> torch.Tensor:
    """Position (bond units, in [0, L)) of the steepest zero crossing of d, `(*batch, L) -> batch`.

    `direction` +1 takes only kinks (d rising), -1 only antikinks, 0 either. One wall of each kind is a
    soliton and an antisoliton on an even ring; an odd ring holds an odd number of walls (use 0). A
    state without such a crossing has no wall to track: the value is then the bond where d comes closest
    to crossing (smallest |d_i| + |d_{i+1}|), a finite but meaningless number for such states.
    """
    pos, dirn, steep = wall_crossings(u)
    ok = steep > 0 if direction == 0 else (dirn == direction)
    score = torch.where(ok, steep, torch.full_like(steep, -1.0))
    d = local_dimerization(u).abs()
    fallback = -(d + torch.roll(d, -1, -1))  # in (-inf, 0]: loses to any real crossing (score >= 0)
    best = torch.where(ok.any(-1, keepdim=True), score, fallback).argmax(-1, keepdim=True)
    fallback_pos = torch.arange(u.shape[-1], dtype=u.dtype, device=u.device).expand_as(pos) + 0.5
    return torch.where(ok, pos, fallback_pos).gather(-1, best).squeeze(-1)
