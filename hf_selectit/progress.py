"""Row progress of scoring work: the engine reports finished rows, a runner or CLI may listen.

A no-op unless a sink is installed, so `ds.map(scorer)` costs nothing extra.

Example:
    >>> previous = install(lambda n: bar.update(n))
    >>> ...                                   # scoring calls advance(n_rows) per micro-batch
    >>> install(previous)
"""

from __future__ import annotations

from typing import Callable, Optional

_SINK: Optional[Callable[[int], None]] = None


def install(sink: Optional[Callable[[int], None]]) -> Optional[Callable[[int], None]]:
    """Install `sink(n_rows)` (None removes it); returns the previous sink."""
    global _SINK
    previous, _SINK = _SINK, sink
    return previous


def advance(n_rows: int) -> None:
    """Report `n_rows` more rows finished (called by the engine after each micro-batch)."""
    if _SINK is not None and n_rows:
        _SINK(n_rows)
