"""A semiclassical bond-SSH ring as a qcsurrogate system plugin: the worked example of docs/plugins.md."""

from __future__ import annotations

from .system import BOND_MATRIX, SSHChain, SSHParams, bond_matrix, bond_order

__all__ = ["BOND_MATRIX", "SSHChain", "SSHParams", "bond_matrix", "bond_order"]
