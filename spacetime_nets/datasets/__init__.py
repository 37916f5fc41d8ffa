"""Synthetic and bundled data sets, split into train / validation / test.

Every generator is deterministic given ``seed``: it draws from its own
``numpy.random.default_rng(seed)`` (and passes ``random_state=seed`` to scikit-learn), and never
reads or changes the global torch or numpy random state.

Classification sets hold features ``x`` of shape ``[N, d]`` in the requested floating ``dtype``
and labels ``y`` of shape ``[N]`` as ``torch.long``; their splits are stratified by class.
Regression (operator-learning) sets hold ``x`` and ``y`` of shape ``[N, d]``: functions sampled
at the nodes ``meta["nodes"]`` (2-D fields flattened row-major, ``meta["grid_shape"]``).

- toy point sets (module ``toy``): [`circles`][spacetime_nets.datasets.circles],
  [`annuli`][spacetime_nets.datasets.annuli], [`xor`][spacetime_nets.datasets.xor],
  [`chess`][spacetime_nets.datasets.chess], [`moons`][spacetime_nets.datasets.moons];
- images (module ``digits``): ``digits()``, at 8x8 or refined by interpolation;
- operators: ``heat()`` (module ``heat``), [`burgers`][spacetime_nets.datasets.burgers] and
  [`darcy`][spacetime_nets.datasets.darcy] (module ``pde``), ``helmholtz()`` (module
  ``helmholtz``: forcing -> solution of ``-lap u - k^2 u = f`` on the unit square, zero on the
  boundary; a global, indefinite operator);
- functions to classify at any resolution: ``signals()`` (module ``signals``).

Images live on the unit square ``[0, 1]^2``: pixel ``(r, c)`` of an ``h x w`` image is the cell
``[r/h, (r+1)/h) x [c/w, (c+1)/w)``, so the row index runs along the *first* coordinate and the
column index along the second. Flattened images are in row-major order (index ``r * w + c``).

[`DATASETS`][spacetime_nets.datasets.DATASETS] names the point sets, digits and heat (as it
always has); [`REGISTRY`][spacetime_nets.datasets.REGISTRY] maps every name
[`load`][spacetime_nets.datasets.load] accepts, the PDE and signal sets included, to its builder.

Every argument is checked before anything is computed: a bad value raises ValueError naming the
argument, what was expected and what came (``n: expected an int >= 1, got 0``); NumPy integer
scalars are taken wherever ints are. A set whose construction would take more than
[`MAX_DATA_BYTES`][spacetime_nets.datasets.MAX_DATA_BYTES] (4 GiB by default; raise the module
attribute to allow more) is refused before allocating, and arguments that would give values that are
not finite in the requested ``dtype`` (a huge ``noise``, extreme ``a_values``) are refused, naming
them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._core import DEFAULT_SPLITS, MAX_DATA_BYTES, DatasetSplits, Split
from .digits import digits, pixel_centres, refine_matrix, resample_images
from .heat import heat
from .helmholtz import helmholtz, solve_helmholtz
from .pde import burgers, darcy, solve_burgers, solve_darcy
from .signals import SIGNAL_CLASSES, signal_templates, signals
from .toy import annuli, chess, circles, moons, xor

__all__ = [
    "DATASETS",
    "DEFAULT_SPLITS",
    "MAX_DATA_BYTES",
    "REGISTRY",
    "SIGNAL_CLASSES",
    "DatasetSplits",
    "Split",
    "annuli",
    "burgers",
    "chess",
    "circles",
    "darcy",
    "digits",
    "heat",
    "helmholtz",
    "load",
    "moons",
    "pixel_centres",
    "refine_matrix",
    "resample_images",
    "signal_templates",
    "signals",
    "solve_burgers",
    "solve_darcy",
    "solve_helmholtz",
    "xor",
]

REGISTRY: dict[str, Callable[..., DatasetSplits]] = {
    "circles": circles,
    "annuli": annuli,
    "xor": xor,
    "chess": chess,
    "moons": moons,
    "digits": digits,
    "heat": heat,
    "burgers": burgers,
    "darcy": darcy,
    "helmholtz": helmholtz,
    "signals": signals,
}
"""Every data set [`load`][spacetime_nets.datasets.load] builds: name -> builder
``(seed=..., **kwargs) -> DatasetSplits``."""

DATASETS: tuple[str, ...] = ("circles", "annuli", "xor", "chess", "moons", "digits", "heat")
"""The point sets, the digits and the heat operator: the names this tuple has always listed."""


def load(name: str, seed: int = 0, **kwargs: Any) -> DatasetSplits:
    """The data set ``name`` (a key of [`REGISTRY`][spacetime_nets.datasets.REGISTRY]) built
    with ``seed`` and ``kwargs``.

    Args:
        name: the data set's name, a key of [`REGISTRY`][spacetime_nets.datasets.REGISTRY].
        seed: the seed passed to its builder.
        **kwargs: further arguments of that builder (e.g. ``n``, ``noise``, ``grid_size``);
            one it does not take is refused.

    Returns:
        The data set, split into train / validation / test.

    Raises:
        ValueError: an unknown name or argument, or a bad argument value.
    """
    loader = REGISTRY.get(name) if isinstance(name, str) else None
    if loader is None:
        raise ValueError(f"name: expected one of {', '.join(REGISTRY)}; got name={name!r}")
    params = inspect.signature(loader).parameters
    unknown = sorted(k for k in kwargs if k not in params)  # seed= binds to load's own seed
    if unknown:
        known = ", ".join(k for k in params if k != "seed")
        raise ValueError(
            f"{', '.join(unknown)}: the data set {name!r} takes no such argument; expected "
            f"some of {known} (and seed)"
        )
    return loader(seed=seed, **kwargs)
