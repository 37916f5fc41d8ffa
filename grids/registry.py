"""Live views of a registry (a dict of variants by name), for the lists other code reads:
a variant registered after import is in every view, since nothing is copied."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["NamesView", "FieldView"]


class NamesView(Sequence):
    """The names of ``registry`` (those whose entry passes ``where``), read at each use:
    ``in``, iteration, ``len`` and indexing see the registry as it is now.

    Args:
        registry: the dict of entries by name (kept, not copied).
        where: a test on an entry; only the names of entries that pass it are in the view
            (None: every name).
    """

    def __init__(self, registry: dict[str, Any], where: Callable[[Any], bool] | None = None):
        self._registry, self._where = registry, where

    def _names(self) -> tuple[str, ...]:
        if self._where is None:
            return tuple(self._registry)
        return tuple(k for k, v in self._registry.items() if self._where(v))

    def __getitem__(self, i):  # type: ignore[override]
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __repr__(self) -> str:
        return repr(self._names())


class FieldView(Mapping):
    """``{name: getattr(entry, field)}`` of ``registry``, read at each use.

    Args:
        registry: the dict of entries by name (kept, not copied).
        field: the attribute of each entry that the view maps its name to.
    """

    def __init__(self, registry: dict[str, Any], field: str) -> None:
        self._registry, self._field = registry, field

    def __getitem__(self, name: str) -> Any:
        return getattr(self._registry[name], self._field)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._registry))

    def __len__(self) -> int:
        return len(self._registry)

    def __repr__(self) -> str:
        return repr(dict(self))
