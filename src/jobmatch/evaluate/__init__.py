"""Metrics, reports and plots."""


def fmt(value: float | None, digits: int = 3) -> str:
    """A metric for a Markdown table; a dash where there is none."""
    return f"{value:.{digits}f}" if value is not None else "–"
