"""Small charts for the terminal: one horizontal bar per line, in eighths of a character (unicode blocks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["bars"]

#: a bar's last character, by eighths filled (0: none)
_EIGHTHS = ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")


def bar(value: float, peak: float, width: int) -> str:
    """``value`` as a bar of at most ``width`` characters, ``peak`` filling them all; a value above zero shows at
    least an eighth."""
    if value <= 0 or peak <= 0:
        return ""
    eighths = max(1, round(min(value / peak, 1.0) * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + _EIGHTHS[part]


def bars(points: Sequence[tuple[str, float]], fmt: Callable[[float], str], *, width: int = 40) -> list[str]:
    """A line per ``(label, value)``: the label, the bar (the largest value fills ``width``), the value."""
    if not points:
        return []
    peak = max(v for _, v in points)
    label_width = max(len(label) for label, _ in points)
    return [f"{label.ljust(label_width)}  {bar(v, peak, width).ljust(width)}  {fmt(v)}" for label, v in points]
