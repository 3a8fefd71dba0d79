"""Constraints of the global solve, one small class each (motile style).

Variables, in order: link ``x_e`` (E), appearance ``a_v``, disappearance ``d_v``,
false positive ``f_v`` (N each) and division ``δ_v`` (M, only where called); all
binary. Each constraint returns sparse rows ``lower ≤ A·y ≤ upper``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix

from labloop.track.costs import EnergyCosts


@dataclass(frozen=True)
class Layout:
    """Where each variable family starts in the solver vector."""

    n_links: int
    n_nodes: int
    n_divisions: int

    @property
    def appear(self) -> int:
        return self.n_links

    @property
    def disappear(self) -> int:
        return self.n_links + self.n_nodes

    @property
    def false_positive(self) -> int:
        return self.n_links + 2 * self.n_nodes

    @property
    def division(self) -> int:
        return self.n_links + 3 * self.n_nodes

    @property
    def size(self) -> int:
        return self.n_links + 3 * self.n_nodes + self.n_divisions


Rows = tuple[csr_matrix, np.ndarray, np.ndarray]


def _rows(row: np.ndarray, col: np.ndarray, val: np.ndarray, n_rows: int, layout: Layout,
          lower: float, upper: float) -> Rows:
    matrix = coo_matrix((val, (row, col)), shape=(n_rows, layout.size)).tocsr()
    return matrix, np.full(n_rows, lower), np.full(n_rows, upper)


@dataclass(frozen=True)
class OneParent:
    """Every detection has exactly one origin: a parent link, an appearance, or it is false.

    ``Σ_{e→v} x_e + a_v + f_v = 1``.
    """

    def rows(self, source: np.ndarray, target: np.ndarray, costs: EnergyCosts,
             layout: Layout) -> Rows:
        n, nodes = layout.n_nodes, np.arange(layout.n_nodes)
        row = np.concatenate([target, nodes, nodes])
        col = np.concatenate([np.arange(layout.n_links), layout.appear + nodes,
                              layout.false_positive + nodes])
        return _rows(row, col, np.ones(len(row)), n, layout, 1.0, 1.0)


@dataclass(frozen=True)
class ChildrenFlow:
    """One child, none (disappears or is false) or two (divides).

    ``Σ_{v→e} x_e + d_v + f_v − δ_v = 1``.
    """

    def rows(self, source: np.ndarray, target: np.ndarray, costs: EnergyCosts,
             layout: Layout) -> Rows:
        n, nodes = layout.n_nodes, np.arange(layout.n_nodes)
        div = costs.division_nodes
        row = np.concatenate([source, nodes, nodes, div])
        col = np.concatenate([np.arange(layout.n_links), layout.disappear + nodes,
                              layout.false_positive + nodes,
                              layout.division + np.arange(len(div))])
        val = np.concatenate([np.ones(len(source) + 2 * n), -np.ones(len(div))])
        return _rows(row, col, val, n, layout, 1.0, 1.0)


@dataclass(frozen=True)
class DivisionExclusive:
    """A cell divides at most once, and then neither disappears nor is false.

    ``Σ_{pairs of v} δ_p + d_v + f_v ≤ 1`` for every mother ``v`` with called pairs.
    """

    def rows(self, source: np.ndarray, target: np.ndarray, costs: EnergyCosts,
             layout: Layout) -> Rows:
        mothers, row_of_pair = np.unique(costs.division_nodes, return_inverse=True)
        m, k = len(mothers), np.arange(len(mothers))
        row = np.concatenate([row_of_pair, k, k])
        col = np.concatenate([layout.division + np.arange(len(row_of_pair)),
                              layout.disappear + mothers, layout.false_positive + mothers])
        return _rows(row, col, np.ones(len(row)), m, layout, 0.0, 1.0)


@dataclass(frozen=True)
class DivisionUsesItsLinks:
    """A division ``p`` into links ``e₁, e₂`` uses both: ``δ_p ≤ x_{e₁}``, ``δ_p ≤ x_{e₂}``."""

    def rows(self, source: np.ndarray, target: np.ndarray, costs: EnergyCosts,
             layout: Layout) -> Rows:
        m = len(costs.division_nodes)
        k = np.arange(2 * m)
        pair = np.tile(np.arange(m), 2)
        row = np.concatenate([k, k])
        col = np.concatenate([layout.division + pair, costs.division_links.T.ravel()])
        val = np.concatenate([np.ones(2 * m), -np.ones(2 * m)])
        return _rows(row, col, val, 2 * m, layout, -np.inf, 0.0)


#: the constraints of a lineage (≤ 1 parent, ≤ 2 children, divisions only where called)
LINEAGE_CONSTRAINTS = (OneParent(), ChildrenFlow(), DivisionExclusive(), DivisionUsesItsLinks())
