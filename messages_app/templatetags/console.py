"""Filters of the console's templates: the views hand over numbers, these write them."""

from django import template

register = template.Library()


@register.filter
def age(seconds: float | None) -> str:
    """A duration, precise at every scale: ``4.2 s``, ``5 min 3 s``, ``2 h 7 min``, ``3 d 4 h``."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        big, small, units = whole // 60, whole % 60, ("min", "s")
    elif whole < 86400:
        big, small, units = whole // 3600, whole % 3600 // 60, ("h", "min")
    else:
        big, small, units = whole // 86400, whole % 86400 // 3600, ("d", "h")
    return f"{big} {units[0]}" + (f" {small} {units[1]}" if small else "")


@register.filter
def limit(attempts: int | None) -> str:
    """An effective max_attempts: ``unlimited`` for None."""
    return "unlimited" if attempts is None else str(attempts)


@register.filter
def seconds(value: float | None) -> str:
    """A setting in seconds: ``10 s``, ``0.5 s``."""
    return "—" if value is None else f"{value:g} s"


@register.filter
def number(value: float | None) -> str:
    """A measured value, short: ``12``, ``0.25``, ``350``, ``12k``, ``1.5M``."""
    if value is None:
        return "—"
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 100 or not isinstance(value, float):
        return f"{value:.0f}"
    return f"{value:.3g}"
