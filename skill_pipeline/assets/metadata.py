"""Asset metadata helpers: tables the UI renders with types, links it makes clickable.

Dagster shows a ``MetadataValue.table`` with a typed column schema (and sorts and filters it); a
hand-built markdown string is only text. Every per-row view in this code location goes through here.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

_TYPES = {"b": "bool", "i": "int", "u": "int", "f": "float"}


def _column_type(series: pd.Series) -> str:
    return _TYPES.get(series.dtype.kind, "string")


def _cell(value: Any) -> Any:
    """JSON-safe cell: numpy scalars as Python ones, missing as None, lists as text."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
        return None if isinstance(value, float) and np.isnan(value) else value
    if isinstance(value, (list, tuple, dict, set)):
        return ", ".join(map(str, value)) if not isinstance(value, dict) else str(value)
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def table(frame: pd.DataFrame, *, max_rows: int = 100) -> dg.TableMetadataValue:
    """``frame`` (its first ``max_rows`` rows) as a typed Dagster table."""
    frame = frame.head(max_rows)
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name=str(c), type=_column_type(frame[c])) for c in frame.columns]
    )
    records = [
        dg.TableRecord({str(c): _cell(v) for c, v in row.items()}) for row in frame.to_dict("records")
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


EVIDENCE_ROWS = 50  # a table a reviewer reads, not an export: the rest is counted


def capped_table(name: str, frame: pd.DataFrame, max_rows: int = EVIDENCE_ROWS) -> dict[str, Any]:
    """``{name: the first max_rows rows as a table, name_count: all rows, name_not_shown: the rest}``."""
    return {
        name: table(frame, max_rows=max_rows),
        f"{name}_count": len(frame),
        f"{name}_not_shown": max(0, len(frame) - max_rows),
    }


def counts_table(counts: dict[str, int], key: str, value: str) -> dg.TableMetadataValue:
    """A two-column table of non-zero counts (e.g. rejected challenges by reason)."""
    rows = [(k, int(v)) for k, v in counts.items() if v]
    return table(pd.DataFrame(rows, columns=[key, value]).astype({value: "int64"}))


def location(text: str) -> dg.MetadataValue:
    """A URL as a link; anything else (a local path) as a path."""
    if text.startswith(("http://", "https://")):
        return dg.MetadataValue.url(text)
    return dg.MetadataValue.path(text)
