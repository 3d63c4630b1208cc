"""The planted malformed rows: copies of real view rows with exactly one defect each.

Negative prices, unknown event types and missing ids are planted here, on the
internal codes; the two defects that only text can hold (a timestamp that is no
time, a missing ``event_id``) are written when the assembly turns codes into the
events table (:func:`simulation.store._events_table`).
"""

from __future__ import annotations

import numpy as np

from features.data.contracts import EVENT_TYPES
from simulation.catalog import _Catalog
from simulation.config import SimulationConfig
from simulation.parameters import _ETYPE, _UNKNOWN_TYPES, MALFORMED_KINDS


def _malformed_rows(
    cfg: SimulationConfig, rng: np.random.Generator, clean: dict[str, np.ndarray], cat: _Catalog
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Copies of real view rows with exactly one defect each, and their kind codes."""
    n_clean = len(clean["ts"])
    sources = np.flatnonzero(clean["etype"] == _ETYPE["product_view"])
    if len(sources) == 0:
        sources = np.flatnonzero(clean["etype"] == _ETYPE["page_view"])
    n_bad = int(round(cfg.malformed_share * n_clean)) if len(sources) else 0
    src = rng.choice(sources, n_bad) if n_bad else np.zeros(0, np.int64)
    rows = {name: col[src].copy() for name, col in clean.items()}
    kind = rng.permutation(np.arange(n_bad) % len(MALFORMED_KINDS))
    unknown = kind == MALFORMED_KINDS.index("unknown_event_type")
    rows["etype"][unknown] = len(EVENT_TYPES) + rng.integers(0, len(_UNKNOWN_TYPES), unknown.sum())
    negative = kind == MALFORMED_KINDS.index("negative_price")
    item = rows["item"][negative]
    rows["price"][negative] = -np.where(item >= 0, cat.price[np.maximum(item, 0)], 9.99)
    no_ids = kind == MALFORMED_KINDS.index("missing_ids")
    rows["cust"][no_ids] = -1
    rows["anon"][no_ids] = -1
    return rows, kind
