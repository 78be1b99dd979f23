"""Result summaries as text: mean ± std over runs and GitHub markdown tables (used by the
evaluation engine's and the benchmarks' reports)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def mean_std(values: Iterable[float], ddof: int = 1) -> tuple[float, float]:
    """Mean and standard deviation of ``values``, NaNs left out.

    Args:
        values: the numbers (e.g. one metric over folds).
        ddof: delta degrees of freedom: 1 = sample std (the default), 0 = population std.

    Returns:
        ``(mean, std)``; the std is 0 for a single value, both are NaN for none.
    """
    kept = [float(v) for v in values if not math.isnan(float(v))]
    if not kept:
        return math.nan, math.nan
    mean = sum(kept) / len(kept)
    if len(kept) == 1 or len(kept) <= ddof:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in kept) / (len(kept) - ddof))


def format_number(value: float | None, digits: int = 4, missing: str = "") -> str:
    """``value`` with ``digits`` decimals; ``missing`` for ``None`` or NaN (e.g. ``"nan"``,
    what an f-string prints)."""
    if value is None or math.isnan(value):
        return missing
    return f"{value:.{digits}f}"


def format_mean_std(
    mean: float | None, std: float | None, digits: int = 4, missing: str = ""
) -> str:
    """``"mean ± std"`` with ``digits`` decimals; a missing (``None`` or NaN) number is written
    ``missing``. With the default ``missing=""``: ``""`` when the mean is missing, the mean alone
    when the std is; with another ``missing``, always ``"mean ± std"`` (``"nan ± nan"``)."""
    head = format_number(mean, digits, missing)
    tail = format_number(std, digits, missing)
    return head if not head or not tail else f"{head} ± {tail}"


def markdown_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], float_format: str | None = None
) -> str:
    """A GitHub markdown table: a header row, a ``|---|`` rule, one line per row.

    Args:
        headers: column titles.
        rows: the cells of each row (``str()`` of each; floats with ``float_format`` when
            given, e.g. ``".3g"``).
        float_format: format spec for float cells.
    """

    def cell(value: object) -> str:
        if float_format is not None and isinstance(value, float):
            return format(value, float_format)
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
