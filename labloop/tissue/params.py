# ruff: noqa: RUF009  (quantity() returns a dataclasses.field)
"""Model parameters: a pytree of typed, unit-carrying fields.

Each parameter is a dataclass field whose metadata give its ``unit`` and
whether it is ``positive``. Positivity is kept by reparametrisation, never by
clipping: an optimiser works on :func:`unconstrain`-ed values (``log`` of a
positive parameter) and the model reads :func:`constrain`-ed ones (``exp``).
Parameters are frozen or freed by name (``"growth_factor.decay_length_um"``,
wildcards allowed) with :func:`trainable_mask`, :func:`partition` /
:func:`combine`, or :func:`freeze` around any ``optax`` optimiser.

Examples
--------
>>> params = default_params(n_genes=2)
>>> raw = unconstrain(params)                      # optimiser space
>>> mask = trainable_mask(params, ["gene.*", "division.max_rate_per_h"])
>>> constrain(raw).growth_factor.decay_length_um   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.flatten_util import ravel_pytree

from labloop.errors import InputError


def quantity(unit: str, positive: bool = False, doc: str = "", **kwargs: Any) -> Any:
    """A dataclass field that carries its physical unit and positivity."""
    return field(metadata={"unit": unit, "positive": positive, "doc": doc}, **kwargs)


def _array_default(shape: tuple[int, ...], value: float = 0.0) -> Callable[[], np.ndarray]:
    return lambda: np.full(shape, value)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class MechanicsParams:
    """Overdamped pair mechanics (velocities, i.e. forces divided by friction).

    The Morse potential between cells ``i, j`` at distance ``r`` (µm) with rest
    distance ``r₀ = Rᵢ + Rⱼ`` is ``U(r) = ε [(1 − e^{−(r − r₀)/w})² − 1]``.
    """

    adhesion_um2_per_h: Any = quantity("µm²/h", True, "Morse well depth ε over friction",
                                       default=2.0)
    morse_width_um: Any = quantity("µm", True, "Morse range w (1/α)", default=3.0)
    motility_um2_per_h: Any = quantity("µm²/h", True, "active random-motility diffusion D",
                                       default=0.5)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GrowthFactorParams:
    """Steady growth-factor field secreted by source cells (see growth_factor.py)."""

    source_strength: Any = quantity("a.u.·µm (3D), a.u. (2D)", True,
                                    "A = q / (4πD) (3D) or q / (2πD) (2D)", default=10.0)
    decay_length_um: Any = quantity("µm", True, "ℓ = √(D / k), diffusion over degradation",
                                    default=20.0)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GeneNetworkParams:
    """Per-cell regulatory network ``dx/dt = r σ(W x + u c + b) − γ x``."""

    weights: Any = quantity("1", False, "W, gene-gene couplings (G × G)",
                            default_factory=_array_default((3, 3)))
    bias: Any = quantity("1", False, "b (G)", default_factory=_array_default((3,)))
    input_weights: Any = quantity("1/a.u.", False, "u, response to the growth factor c (G)",
                                  default_factory=_array_default((3,)))
    production_per_h: Any = quantity("1/h", True, "r, maximal production rate", default=1.0)
    decay_per_h: Any = quantity("1/h", True, "γ, degradation rate", default=1.0)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class DivisionParams:
    """Division propensity ``λ(x) = λ_max σ(v · x + b_λ)`` of proliferating cells."""

    max_rate_per_h: Any = quantity("1/h", True, "λ_max", default=0.1)
    output_weights: Any = quantity("1", False, "v, read-out of the genes (G)",
                                   default_factory=_array_default((3,)))
    output_bias: Any = quantity("1", False, "b_λ", default=0.0)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GrowthParams:
    """Cells relax their radius toward a target size after division."""

    rate_per_h: Any = quantity("1/h", True, "k_g, radius relaxation rate", default=0.1)
    target_radius_um: Any = quantity("µm", True, "R*, size of a grown cell", default=5.0)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Ellipsoid:
    """An optional confining ellipsoidal wall (an eggshell).

    A cell whose centre lies outside ``Σ ((x − c)/a)² ≤ 1`` is pushed back with
    velocity ``−k (1 − 1/s)(x − c)``, ``s = ‖(x − c)/a‖``.
    """

    semi_axes_um: Any = quantity("µm", True, "a, semi-axes (z, y, x)",
                                 default_factory=_array_default((3,), 50.0))
    centre_um: Any = quantity("µm", False, "c, centre (z, y, x)",
                              default_factory=_array_default((3,)))
    stiffness_per_h: Any = quantity("1/h", True, "k, wall stiffness", default=5.0)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class TissueParams:
    """All parameters of the tissue model (a pytree of the groups above)."""

    mechanics: MechanicsParams = field(default_factory=MechanicsParams)
    growth_factor: GrowthFactorParams = field(default_factory=GrowthFactorParams)
    gene: GeneNetworkParams = field(default_factory=GeneNetworkParams)
    division: DivisionParams = field(default_factory=DivisionParams)
    growth: GrowthParams = field(default_factory=GrowthParams)
    confinement: Ellipsoid | None = None

    def replace(self, **changes: Any) -> TissueParams:
        """A copy with some groups replaced."""
        return dataclasses.replace(self, **changes)


def default_params(n_genes: int = 3, key: jax.Array | None = None, scale: float = 0.5,
                   confinement: Ellipsoid | None = None) -> TissueParams:
    """Default parameters, with random gene-network couplings when ``key`` is given.

    Parameters
    ----------
    n_genes
        Size ``G`` of the gene network.
    key
        PRNG key for ``W, b, u, v`` drawn from ``N(0, scale²)``; zeros without it.
    scale
        Standard deviation of the random couplings.
    confinement
        Optional :class:`Ellipsoid` wall.
    """
    if n_genes < 1:
        raise InputError(f"the gene network needs at least one gene, got {n_genes}")
    dtype = jnp.result_type(float)
    if key is None:
        w, b, u, v = (jnp.zeros((n_genes, n_genes), dtype), jnp.zeros(n_genes, dtype),
                      jnp.zeros(n_genes, dtype), jnp.zeros(n_genes, dtype))
    else:
        kw, kb, ku, kv = jax.random.split(key, 4)
        w = scale * jax.random.normal(kw, (n_genes, n_genes), dtype)
        b = scale * jax.random.normal(kb, (n_genes,), dtype)
        u = scale * jax.random.normal(ku, (n_genes,), dtype)
        v = scale * jax.random.normal(kv, (n_genes,), dtype)
    as_float = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    params = TissueParams(gene=GeneNetworkParams(weights=w, bias=b, input_weights=u),
                          division=DivisionParams(output_weights=v),
                          confinement=confinement)
    return jax.tree_util.tree_map(as_float, params)


# ---------------------------------------------------------------- reparametrisation
def _map_fields(params: Any, positive_fn: Callable, other_fn: Callable) -> Any:
    if params is None:
        return None
    if dataclasses.is_dataclass(params):
        changes = {}
        for f in dataclasses.fields(params):
            value = getattr(params, f.name)
            if "unit" in f.metadata:
                fn = positive_fn if f.metadata["positive"] else other_fn
                changes[f.name] = jax.tree_util.tree_map(fn, value)
            else:
                changes[f.name] = _map_fields(value, positive_fn, other_fn)
        return dataclasses.replace(params, **changes)
    return params


def unconstrain(params: TissueParams) -> TissueParams:
    """Parameters in optimiser space: ``log`` of every positive field."""
    return _map_fields(params, jnp.log, lambda x: x)


def constrain(raw: TissueParams) -> TissueParams:
    """Physical parameters from optimiser space: ``exp`` of every positive field."""
    return _map_fields(raw, jnp.exp, lambda x: x)


# ---------------------------------------------------------------- freeze / free
def parameter_names(params: TissueParams) -> list[str]:
    """Dotted names of the leaves, e.g. ``"gene.weights"``, in pytree order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [".".join(getattr(k, "name", str(k)) for k in path) for path, _ in flat]


def trainable_mask(params: TissueParams, free: Sequence[str]) -> TissueParams:
    """Pytree of bools: ``True`` for leaves whose name matches a pattern in ``free``.

    Patterns are shell-style (``"gene.*"``, ``"*.max_rate_per_h"``).

    Raises
    ------
    InputError
        A pattern that matches no parameter.
    """
    names = parameter_names(params)
    for pattern in free:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise InputError(f"no tissue parameter matches {pattern!r}; known: "
                             f"{', '.join(names)}")
    flags = [any(fnmatch.fnmatchcase(n, p) for p in free) for n in names]
    treedef = jax.tree_util.tree_structure(params)
    return jax.tree_util.tree_unflatten(treedef, flags)


def partition(params: TissueParams, mask: TissueParams) -> tuple[TissueParams, TissueParams]:
    """Split into ``(free, frozen)`` pytrees; the other half's leaves are ``None``."""
    free = jax.tree_util.tree_map(lambda x, m: x if m else None, params, mask)
    frozen = jax.tree_util.tree_map(lambda x, m: None if m else x, params, mask)
    return free, frozen


def combine(free: TissueParams, frozen: TissueParams) -> TissueParams:
    """Inverse of :func:`partition`."""
    return jax.tree_util.tree_map(lambda a, b: b if a is None else a, free, frozen,
                                  is_leaf=lambda x: x is None)


def free_vector(params: TissueParams, mask: TissueParams
                ) -> tuple[jax.Array, Callable[[jax.Array], TissueParams]]:
    """The free leaves of ``params`` (``mask``) in optimiser space as one vector, and the
    map from such a vector back to the whole parameters (frozen leaves as in ``params``;
    differentiable, so it can sit inside a loss)."""
    raw = jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)), unconstrain(params))
    free, frozen = partition(raw, mask)
    vector, unravel = ravel_pytree(free)

    def to_params(v: jax.Array) -> TissueParams:
        return constrain(combine(unravel(v), frozen))

    return vector, to_params


def freeze(optimizer: Any, mask: TissueParams) -> Any:
    """An ``optax`` optimiser that updates the masked-in leaves and zeroes the others."""
    import optax

    labels = jax.tree_util.tree_map(lambda m: "free" if m else "frozen", mask)
    return optax.multi_transform({"free": optimizer, "frozen": optax.set_to_zero()}, labels)


def describe(params: TissueParams) -> pd.DataFrame:
    """One row per parameter leaf: ``name, value, unit, positive, doc``."""
    rows = []

    def walk(obj: Any, prefix: str) -> None:
        if obj is None:
            return
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            name = f"{prefix}{f.name}"
            if "unit" in f.metadata:
                arr = np.asarray(value)
                rows.append([name, arr.item() if arr.size == 1 else arr.tolist(),
                             f.metadata["unit"], f.metadata["positive"], f.metadata["doc"]])
            else:
                walk(value, name + ".")

    walk(params, "")
    return pd.DataFrame(rows, columns=["name", "value", "unit", "positive", "doc"])
