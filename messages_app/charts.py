"""Line charts drawn on the server as SVG: the geometry the console's templates
draw (``templates/messages_app/_chart.html``, ``_spark.html``).

A chart is a few series over the same buckets, one value per bucket (None
where nothing was measured: the line skips it). Each line carries its values
in ``data-values`` too, so what a chart shows can be checked against the stats
API it is drawn from.
"""

import math
from dataclasses import dataclass
from datetime import datetime

# Series colours, by what they measure (the page's CSS uses the same for states).
COLOURS = {
    "ready": "#1a7f37",
    "leased": "#0969da",
    "delayed": "#8250df",
    "dead": "#cf222e",
    "sent": "#0969da",
    "acked": "#1a7f37",
    "expired": "#bf8700",
    "died": "#cf222e",
    "processing_p50": "#1a7f37",
    "processing_p99": "#bf8700",
    "depth": "#8c959f",
}


@dataclass(frozen=True)
class Line:
    name: str
    label: str
    colour: str
    points: str  # SVG polyline points, "x,y x,y ..."
    values: str  # every bucket's value, "" where there is none, comma-separated
    # What the legend says: the last value measured, or the window's total.
    summary: float | None


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    width: int
    height: int
    left: int
    top: int
    bottom: int  # y of the x axis
    right: int
    top_value: float  # the value at the top of the plot
    lines: list[Line]
    start: datetime
    end: datetime
    # A horizontal mark (the lease timeout on the processing-time chart).
    mark: float | None = None
    mark_y: float | None = None
    mark_label: str = ""

    @property
    def empty(self) -> bool:
        return not any(line.points for line in self.lines)

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2

    @property
    def center(self) -> float:
        return (self.left + self.right) / 2


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def line_chart(
    title: str,
    times: list[datetime],
    series: dict[str, list[float | None]],
    labels: dict[str, str] | None = None,
    *,
    unit: str = "",
    width: int = 380,
    height: int = 150,
    margins: tuple[int, int, int, int] = (8, 8, 22, 46),  # top, right, bottom, left
    mark: float | None = None,
    mark_label: str = "",
    totals: bool = False,
) -> Chart:
    """``series`` (name: a value per time in ``times``) as lines on one scale;
    the legend gives each line's last value, or with ``totals`` its sum."""
    top, right, bottom, left = margins
    plot_w, plot_h = width - left - right, height - top - bottom
    measured = [v for values in series.values() for v in values if v is not None]
    top_value = nice_ceiling(max([*measured, 0]))
    step = plot_w / max(len(times) - 1, 1)

    def y(value: float) -> float:
        return top + plot_h - value / top_value * plot_h

    lines = []
    for name, values in series.items():
        points = " ".join(
            f"{left + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values) if v is not None
        )
        known = [v for v in values if v is not None]
        summary = sum(known) if totals else (known[-1] if known else None)
        lines.append(
            Line(
                name,
                (labels or {}).get(name, name),
                COLOURS.get(name, "#57606a"),
                points,
                ",".join(_number(v) for v in values),
                summary,
            )
        )
    return Chart(
        title=title,
        unit=unit,
        width=width,
        height=height,
        left=left,
        top=top,
        bottom=top + plot_h,
        right=width - right,
        top_value=top_value,
        lines=lines,
        start=times[0],
        end=times[-1],
        mark=mark,
        # The mark is drawn when it falls within the plot (the legend names it anyway).
        mark_y=y(mark) if mark is not None and mark <= top_value else None,
        mark_label=mark_label,
    )
