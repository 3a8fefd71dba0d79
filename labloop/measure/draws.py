"""Realisations of a lineage for uncertainty: which nodes and links exist, with what weight.

A *draw* is one plausible version of the tissue: a subset of the nodes and links
(from a lineage sampled by the tracker, or, where no samples are available, by
keeping each node with its detection ``score`` and each link with its
``probability``) together with Poisson-bootstrap weights on cells, so that the
spread of a statistic over draws covers both tracking errors and the
finite-sample noise of estimating a rate or a mean from a few dozen cells.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labloop.lineage import Lineage


@dataclass(frozen=True)
class Realisation:
    """One version of the lineage.

    Attributes
    ----------
    nodes
        Node table of the nodes that exist in this version.
    edges
        Edge table of the links that exist (both ends in ``nodes``).
    weight
        Bootstrap weight of each node (aligned with ``nodes``); all ones for
        the point estimate.
    """

    nodes: pd.DataFrame
    edges: pd.DataFrame
    weight: pd.Series


def point_estimate(lineage: Lineage) -> Realisation:
    """The lineage as reported (every node and link, unit weights)."""
    return Realisation(lineage.nodes, lineage.edges,
                       pd.Series(1.0, index=lineage.nodes.index))


def _restrict(nodes: pd.DataFrame, edges: pd.DataFrame, keep_nodes: np.ndarray,
              keep_edges: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    kept = nodes[keep_nodes]
    edges = edges[keep_edges]
    edges = edges[edges["source"].isin(kept.index) & edges["target"].isin(kept.index)]
    return kept, edges


def draw_realisations(
    lineage: Lineage,
    n_draws: int,
    seed: int,
    samples: Sequence[Lineage] | None = None,
    bootstrap: bool = True,
) -> Iterator[Realisation]:
    """Yield ``n_draws`` realisations of ``lineage``.

    Parameters
    ----------
    lineage
        The reported (most probable) lineage.
    n_draws
        Number of realisations.
    seed
        Seed of every random draw.
    samples
        Alternative lineages drawn by the tracker; cycled through when given,
        otherwise nodes are kept with probability ``score`` and links with
        probability ``probability`` (independently).
    bootstrap
        Give each cell a Poisson(1) weight (the Poisson bootstrap).
    """
    rng = np.random.default_rng(seed)
    for draw in range(n_draws):
        if samples:
            sample = samples[draw % len(samples)]
            nodes, edges = sample.nodes, sample.edges
        else:
            keep_nodes = rng.random(len(lineage.nodes)) < lineage.nodes["score"].to_numpy()
            keep_edges = rng.random(len(lineage.edges)) < lineage.edges["probability"].to_numpy()
            nodes, edges = _restrict(lineage.nodes, lineage.edges, keep_nodes, keep_edges)
        weights = rng.poisson(1.0, len(nodes)).astype(np.float64) if bootstrap else np.ones(
            len(nodes))
        yield Realisation(nodes, edges, pd.Series(weights, index=nodes.index))
