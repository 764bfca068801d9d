"""PARC (differentiator F + integrator S per variable) and its single-CNN baseline, built from a graph.

Lifting rules, generic over any System's graph:
- a block's CNN is 1D over sites for a field, 2D over the (i, j) SITE grid for the density matrix: with
  `d` orbitals per site rho `(L*d, L*d)` enters as d*d complex channels `rho_{ia,jb}` on the (L, L)
  grid and leaves the same way, so translating the chain by one site shifts the grid by one pixel
  (boundary padding and translation equivariance as for d = 1, where this is rho itself);
- a site quantity feeding a pair block enters as two channels, broadcast along rows (x_i) and
  along columns (x_j);
- a pair matrix feeding a site block enters only through its declared reducing view (e.g. diagonal);
- with `bilinear_inputs`, products are added as channels: every site channel times every pair channel
  in a pair block (x_i rho_ij, x_j rho_ij), every pair of distinct site channels in a site block;
- the rho block is a true complex CNN (`complex_mode="complex"`) or a real CNN on (Re, Im) channels
  (`"split"`); real inputs to a complex block enter with zero imaginary part.
"""

from __future__ import annotations

import torch
from torch import nn

from ..graph import Dependency, DependencyGraph, get_view, kind_of, reducing_views
from ..state import RHO, State, rho_blocks, rho_from_blocks
from .base import CNNConfig, PARCConfig, PlainCNNConfig, Surrogate
from .layers import PARCCNN
from .linear_init import fit_skip
from .normalization import input_key


def state_dependencies(graph: DependencyGraph, target: str, orbitals: int = 1) -> tuple[Dependency, ...]:
    """The whole state as seen from `target`'s block: every field, and every pair variable as a
    matrix (pair blocks) or, in site blocks, through the core's reducing views (diagonal, bond_real,
    bond_imag: occupations and bond currents; for spin-1/2 also the spin densities and spin-resolved
    bonds, `reducing_views(orbitals)`) plus any the graph itself names."""
    fields = [Dependency(v) for v in graph.variables if kind_of(v) == "site"]
    pairs = [v for v in graph.variables if kind_of(v) == "pair"]
    if kind_of(target) == "pair":
        return (*fields, *(Dependency(v) for v in pairs))
    named = {d.resolved_view().name for deps in graph.edges.values() for d in deps}
    names = sorted(set(reducing_views(orbitals)) | {n for n in named if get_view(n).input_kind == "pair"})
    reducing = [n for n in names if get_view(n).output_kind == "site"]
    return (*fields, *(Dependency(p, n) for p in pairs for n in reducing))


def pair_block_size(dep: Dependency, orbitals: int) -> int:
    """Rows per site of a pair-kind input: `orbitals` for a view of the density matrix (rho's own
    layout), 1 for a view building a site-pair matrix from site fields."""
    return orbitals if kind_of(dep.source) == "pair" else 1


def pair_channels(x: torch.Tensor, e: int) -> list[torch.Tensor]:
    """A site-major `(B, L*e, L*e)` matrix as its e*e `(B, L, L)` site-grid channels, `[a * e + b]` = x_{ia,jb}."""
    blocks = rho_blocks(x, int(x.shape[-1]) // e)  # (B, L, L, e, e)
    return list(blocks.flatten(-2).movedim(-1, 1).unbind(1))


class BlockLifter:
    """Turns the normalised inputs of one target into the channel tensor its CNN reads.

    Pair blocks always travel as real tensors with [Re; Im] channel blocks (see `layers.Conv`);
    `in_channels`/`out_channels` count complex channels for a complex block, real ones otherwise.
    With `orbitals` d, the pair variable is d*d channels on the (L, L) site grid (`pair_channels`).
    """

    def __init__(self, target: str, deps: tuple[Dependency, ...], complex_mode: str, bilinear: bool = False,
                 orbitals: int = 1) -> None:
        self.deps = deps
        self.kind = kind_of(target)
        self.complex = self.kind == "pair" and complex_mode == "complex"
        self.bilinear = bilinear
        self.orbitals = orbitals
        n_site = n_pair = 0
        for d in self.deps:
            if self.kind == "site":
                n_site += 1
            elif d.resolved_view().output_kind == "site":
                n_site += 2  # x_i and x_j
            else:
                n_pair += pair_block_size(d, orbitals) ** 2
        n = n_site + n_pair
        if bilinear:
            n += n_site * n_pair if self.kind == "pair" else n_site * (n_site - 1) // 2
        out = 1 if self.kind == "site" else orbitals**2
        self.in_channels = n if self.kind == "site" or self.complex else 2 * n
        self.out_channels = out if self.kind == "site" or self.complex else 2 * out

    def lift(self, normed: dict[str, torch.Tensor]) -> torch.Tensor:
        sites: list[torch.Tensor] = []
        pairs: list[torch.Tensor] = []
        for d in self.deps:
            x = normed[input_key(d)]
            if self.kind == "site":
                sites.append(x)
            elif d.resolved_view().output_kind == "pair":
                pairs.extend(pair_channels(x, pair_block_size(d, self.orbitals)))
            else:
                L = x.shape[-1]
                sites.append(x[..., :, None].expand(*x.shape, L))
                sites.append(x[..., None, :].expand(*x.shape[:-1], L, L))
        chans = sites + pairs
        if self.bilinear:
            if self.kind == "pair":
                chans += [s * p for s in sites for p in pairs]
            else:
                chans += [sites[a] * sites[b] for a in range(len(sites)) for b in range(a + 1, len(sites))]
        if self.kind == "site":
            return torch.stack(chans, dim=1)
        re = torch.stack([c.real if c.is_complex() else c for c in chans], 1)
        im = torch.stack([c.imag if c.is_complex() else torch.zeros_like(c) for c in chans], 1)
        return torch.cat([re, im], 1)

    def to_variable(self, y: torch.Tensor) -> torch.Tensor:
        """CNN output channels -> the variable's own layout `(B, L)` or complex `(B, L*d, L*d)`."""
        if self.kind == "site":
            return y[:, 0]
        d = self.orbitals
        z = torch.complex(y[:, : d * d], y[:, d * d :])  # (B, d*d, L, L)
        return rho_from_blocks(z.movedim(1, -1).unflatten(-1, (d, d)))

    def to_channels(self, v: torch.Tensor) -> torch.Tensor:
        """Inverse of `to_variable`."""
        if self.kind == "site":
            return v[:, None]
        chans = pair_channels(v, self.orbitals)
        return torch.stack([c.real for c in chans] + [c.imag for c in chans], 1)


class _GraphSurrogate(Surrogate):
    """Shared plumbing: normalise inputs once per step, flatten batch axes, un-normalise increments."""

    config: CNNConfig

    def __init__(self, graph, boundary, config: CNNConfig, normalization, *, orbitals: int = 1) -> None:
        super().__init__(graph, boundary, config, normalization, orbitals=orbitals)
        self.lifters = {
            t: BlockLifter(t, graph.inputs(t), config.complex_mode, config.bilinear_inputs, orbitals)
            for t in graph.variables
        }
        self.state_lifters = {
            t: BlockLifter(t, state_dependencies(graph, t, orbitals), config.complex_mode, config.bilinear_inputs, orbitals)
            for t in graph.variables
        }
        # buffers are real so `.to(dtype)` never drops an imaginary part; not persistent because
        # the normalisation is saved as JSON in the model spec
        for key, (mean, std) in normalization.inputs.items():
            m = complex(mean)
            self.register_buffer(f"in_mean_re__{_safe(key)}", torch.tensor(m.real, dtype=torch.float64), persistent=False)
            self.register_buffer(f"in_mean_im__{_safe(key)}", torch.tensor(m.imag, dtype=torch.float64), persistent=False)
            self.register_buffer(f"in_std__{_safe(key)}", torch.tensor(std, dtype=torch.float64), persistent=False)

    def _net(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One CNN on `x`; with `autocast: bf16` its convolutions run in bfloat16 and the result comes back
        in `x`'s precision, so increments are added to the state in float32."""
        if self.config.autocast == "none":
            return net(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return net(x).to(x.dtype)

    def _cnn(self, in_ch: int, out_ch: int, target: str, width: int) -> PARCCNN:
        lifter = self.lifters[target]
        return PARCCNN(
            in_ch,
            out_ch,
            width=width,
            dim=1 if lifter.kind == "site" else 2,
            boundary=self.boundary,
            complex_=lifter.complex,
            act=self.config.activation,
            dropout=self.config.dropout,
            linear_skip=self.config.linear_skip,
        )

    def _normed_inputs(self, state: State) -> tuple[dict[str, torch.Tensor], tuple[int, ...]]:
        self.check_orbitals(state)
        batch = tuple(state.batch_shape)
        flat = state.map(lambda t: t.reshape(-1, *t.shape[len(batch):]))
        variables = flat.variables()
        normed: dict[str, torch.Tensor] = {}
        for lf in self._all_lifters():
            for dep in lf.deps:
                key = input_key(dep)
                if key not in normed:
                    x = dep.evaluate(variables)
                    k = _safe(key)
                    re = getattr(self, f"in_mean_re__{k}").to(x.real.dtype)
                    mean = torch.complex(re, getattr(self, f"in_mean_im__{k}").to(x.real.dtype)) if x.is_complex() else re
                    normed[key] = (x - mean) / getattr(self, f"in_std__{k}").to(x.real.dtype)
        return normed, batch

    def _all_lifters(self) -> list[BlockLifter]:
        return list(self.lifters.values())

    def integrator_in_channels(self, t: str) -> int:
        """Input channels of PARC's integrator S for `t` under the configured `integrator_inputs`
        (the single-CNN baseline uses it to size itself like that PARC)."""
        lf = self.lifters[t]
        extra = {"derivative": 0, "block": lf.in_channels, "state": self.state_lifters[t].in_channels}
        return lf.out_channels + extra[self.config.integrator_inputs]

    @torch.no_grad()
    def initialize_from_data(self, current: State, derivative: State, nxt: State) -> dict[str, float]:
        """With `init: lstsq`, fit every block's linear skip by least squares (see `linear_init`);
        returns the relative residual of each fitted map."""
        if self.config.init != "lstsq":
            return {}
        was = self.training
        self.eval()
        normed, _ = self._normed_inputs(self.prepare(current))
        report: dict[str, float] = {}
        for t, lf in self.lifters.items():
            x = lf.lift(normed)
            inc = _target_channels(lf, nxt[t] - current[t], len(current.batch_shape), self.normalization.increment[t], x.device)
            d = _target_channels(lf, derivative[t], len(derivative.batch_shape), self.normalization.derivative[t], x.device)
            report.update(self._fit_linear(t, x, d, inc, normed))
        self.train(was)
        return report

    def _fit_linear(self, t: str, x: torch.Tensor, derivative: torch.Tensor, increment: torch.Tensor,
                    normed: dict[str, torch.Tensor]) -> dict[str, float]:
        """Least-squares fit of block `t`'s linear paths to the normalised channel targets."""
        raise NotImplementedError

    def _assemble(self, state: State, increments: dict[str, torch.Tensor], batch: tuple[int, ...]) -> State:
        out: dict[str, torch.Tensor] = {}
        for v in self.graph.variables:
            inc = increments[v] * self.normalization.increment[v]
            out[v] = state[v] + inc.reshape(*batch, *inc.shape[1:])
        nxt = State._raw({k: out[k] for k in self.field_names}, out[RHO])
        return self.finish_step(state, nxt)

    def loss(self, state, derivative, next_state, aux=None, derivative_weight=1.0):
        """Eq. (11) in normalised units: step MSE per variable, plus derivative MSE for every block
        that exposes a derivative estimate (PARC's F; the single-CNN baseline has none)."""
        if aux is None:
            _, aux = self.predict(state)
        parts = {}
        total = 0.0
        for v in self.graph.variables:
            inc = aux[f"inc:{v}"]
            true_inc = ((next_state[v] - state[v]) / self.normalization.increment[v]).reshape(inc.shape)
            parts[f"step:{v}"] = (inc - true_inc).abs().pow(2).mean()
            total = total + parts[f"step:{v}"]
            if f"deriv:{v}" in aux:
                d = aux[f"deriv:{v}"]
                true_d = (derivative[v] / self.normalization.derivative[v]).reshape(d.shape)
                parts[f"deriv:{v}"] = (d - true_d).abs().pow(2).mean()
                total = total + derivative_weight * parts[f"deriv:{v}"]
        return total, {k: float(p.detach()) for k, p in parts.items()}


def _target_channels(lf: BlockLifter, v: torch.Tensor, batch_ndim: int, scale: float, device: torch.device) -> torch.Tensor:
    """A variable's values with flattened batch axes, divided by `scale`, as `lf`'s output channels."""
    flat = v.reshape(-1, *v.shape[batch_ndim:])
    return lf.to_channels((flat / scale).to(device=device))


def _cat_channels(a: torch.Tensor, b: torch.Tensor, complex_: bool) -> torch.Tensor:
    """Concatenate channel stacks; complex stacks keep the [Re; Im] block layout."""
    if not complex_:
        return torch.cat([a, b], 1)
    ar, ai = a.chunk(2, 1)
    br, bi = b.chunk(2, 1)
    return torch.cat([ar, br, ai, bi], 1)


def _safe(key: str) -> str:
    return key.replace(":", "__")


class PARC(_GraphSurrogate):
    """One PARC block per variable: `u(t + dt) = u(t) + S[F[inputs]]`, F supervised by the exact rhs."""

    name = "parc"
    Config = PARCConfig

    def __init__(self, graph, boundary, config, normalization, *, orbitals: int = 1) -> None:
        super().__init__(graph, boundary, config, normalization, orbitals=orbitals)
        self.differentiators = nn.ModuleDict()
        self.integrators = nn.ModuleDict()
        for t, lf in self.lifters.items():
            self.differentiators[t] = self._cnn(lf.in_channels, lf.out_channels, t, config.width)
            self.integrators[t] = self._cnn(self.integrator_in_channels(t), lf.out_channels, t, config.width)
        self.to(self.dtype)

    def _all_lifters(self) -> list[BlockLifter]:
        extra = list(self.state_lifters.values()) if self.config.integrator_inputs == "state" else []
        return list(self.lifters.values()) + extra

    def integrator_input(self, t: str, f: torch.Tensor, x: torch.Tensor, normed: dict[str, torch.Tensor]) -> torch.Tensor:
        """What S reads: F's output, plus F's inputs or the whole state, per `integrator_inputs`."""
        mode = self.config.integrator_inputs
        if mode == "derivative":
            return f
        extra = x if mode == "block" else self.state_lifters[t].lift(normed)
        return _cat_channels(f, extra.to(f.dtype), self.lifters[t].complex)

    def predict(self, state: State) -> tuple[State, dict[str, torch.Tensor]]:
        normed, batch = self._normed_inputs(state)
        aux: dict[str, torch.Tensor] = {}
        incs: dict[str, torch.Tensor] = {}
        for t, lf in self.lifters.items():
            x = lf.lift(normed)
            f = self._net(self.differentiators[t], x)
            inc = lf.to_variable(self._net(self.integrators[t], self.integrator_input(t, f, x, normed)))
            aux[f"deriv:{t}"] = lf.to_variable(f)
            aux[f"inc:{t}"] = inc
            incs[t] = inc
        return self._assemble(state, incs, batch), aux

    def _fit_linear(self, t, x, derivative, increment, normed):
        """F's skip fits the normalised exact derivative, then S's skip the increment from S's input."""
        report = {f"F:{t}": fit_skip(self.differentiators[t], x, derivative)}
        f = self.differentiators[t](x.to(self.dtype))
        report[f"S:{t}"] = fit_skip(self.integrators[t], self.integrator_input(t, f, x, normed), increment)
        return report


class PlainCNN(_GraphSurrogate):
    """Baseline without the PARC split: one CNN per variable maps inputs straight to the increment.

    Its width is chosen so the parameter count matches PARC at the configured width, which makes
    the comparison about the architecture, not the size.
    """

    name = "cnn"
    Config = PlainCNNConfig

    def __init__(self, graph, boundary, config, normalization, *, orbitals: int = 1) -> None:
        super().__init__(graph, boundary, config, normalization, orbitals=orbitals)
        target = sum(
            self._count(t, lf.in_channels, lf.out_channels, config.width)
            + self._count(t, self.integrator_in_channels(t), lf.out_channels, config.width)
            for t, lf in self.lifters.items()
        )  # PARC's F and S at the configured width
        width = _matching_width(
            lambda w: sum(self._count(t, lf.in_channels, lf.out_channels, w) for t, lf in self.lifters.items()), target
        )
        self.matched_width = width
        self.nets = nn.ModuleDict(
            {t: self._cnn(lf.in_channels, lf.out_channels, t, width) for t, lf in self.lifters.items()}
        )
        self.to(self.dtype)

    def _count(self, target: str, in_ch: int, out_ch: int, width: int) -> int:
        lf = self.lifters[target]
        return PARCCNN.count_parameters(in_ch, out_ch, width, 1 if lf.kind == "site" else 2, lf.complex, self.config.linear_skip)

    def predict(self, state: State) -> tuple[State, dict[str, torch.Tensor]]:
        normed, batch = self._normed_inputs(state)
        aux, incs = {}, {}
        for t, lf in self.lifters.items():
            inc = lf.to_variable(self._net(self.nets[t], lf.lift(normed)))
            aux[f"inc:{t}"] = inc
            incs[t] = inc
        return self._assemble(state, incs, batch), aux

    def _fit_linear(self, t, x, derivative, increment, normed):
        """Its one CNN's skip fits the normalised increment from the inputs."""
        return {f"N:{t}": fit_skip(self.nets[t], x, increment)}


def _matching_width(count, target: int) -> int:
    """The width whose parameter count is closest to `target` (counts grow monotonically with width)."""
    lo, hi = 4, 8
    while count(hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # invariant: count(lo) < target <= count(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return min((lo, hi), key=lambda w: abs(count(w) - target))
