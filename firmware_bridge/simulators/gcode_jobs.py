"""Realistic generated G-code for the GRBL simulator: a CNC pocket and contour, a laser engrave and cut.

The jobs look like what a CAM program (Fusion, Estlcam, LightBurn) posts for GRBL: a header with modal
set-up, spindle or laser start, safe retracts, multiple depth passes or raster rows, arcs on the
contour, and a program end. Sizes are parameters so tests can run short jobs and demos long ones.
"""

from __future__ import annotations

import math
from pathlib import Path


def _f(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def cnc_pocket_job(
    *,
    width: float = 60.0,
    height: float = 40.0,
    depth: float = 3.0,
    stepdown: float = 1.0,
    tool_diameter: float = 6.0,
    stepover: float = 0.45,
    feed: float = 1200.0,
    plunge: float = 300.0,
    rpm: float = 18000.0,
    origin: tuple[float, float] = (10.0, 10.0),
    line_numbers: bool = False,
) -> str:
    """A rectangular pocket cleared by inward offset loops per depth pass, then a contour with arcs.

    Returns the program text (``\\n`` line ends). ``line_numbers`` prefixes ``N`` words so status
    reports carry ``Ln:``.
    """
    if min(width, height) <= tool_diameter:
        raise ValueError("the pocket must be wider than the tool")
    ox, oy = origin
    r = tool_diameter / 2
    lines = [
        "(FabLab demo: pocket and contour)",
        f"(tool: {tool_diameter:g} mm flat end mill, {rpm:g} rpm)",
        "G90 G94 G17",
        "G21",
        "G54",
        "G0 Z5",
        f"M3 S{rpm:g}",
        "G4 P1",
    ]
    passes = max(1, math.ceil(depth / stepdown))
    step = tool_diameter * stepover
    for p in range(1, passes + 1):
        z = -min(depth, p * stepdown)
        cx, cy = ox + width / 2, oy + height / 2
        lines.append(f"(pocket pass {p}/{passes} at Z{_f(z)})")
        lines.append(f"G0 X{_f(cx)} Y{_f(cy)}")
        lines.append("G0 Z1")
        lines.append(f"G1 Z{_f(z)} F{plunge:g}")
        # Inward-offset loops, from the centre outwards.
        half_w, half_h = width / 2 - r, height / 2 - r
        loops = max(1, math.ceil(min(half_w, half_h) / step))
        first = True
        for i in range(loops, -1, -1):
            inset = i * step
            x0, x1 = cx - half_w + inset, cx + half_w - inset
            y0, y1 = cy - half_h + inset, cy + half_h - inset
            if x1 <= x0 or y1 <= y0:
                continue
            feed_word = f" F{feed:g}" if first else ""
            first = False
            lines.append(f"G1 X{_f(x0)} Y{_f(y0)}{feed_word}")
            lines.append(f"G1 X{_f(x1)} Y{_f(y0)}")
            lines.append(f"G1 X{_f(x1)} Y{_f(y1)}")
            lines.append(f"G1 X{_f(x0)} Y{_f(y1)}")
            lines.append(f"G1 X{_f(x0)} Y{_f(y0)}")
        lines.append("G0 Z5")
    # Outside contour with rounded corners (radius 5), full depth in passes.
    corner = 5.0
    x0, y0 = ox - r - 3, oy - r - 3
    x1, y1 = ox + width + r + 3, oy + height + r + 3
    for p in range(1, passes + 1):
        z = -min(depth, p * stepdown)
        lines.append(f"(contour pass {p}/{passes})")
        lines.append(f"G0 X{_f(x0 + corner)} Y{_f(y0)}")
        lines.append("G0 Z1")
        lines.append(f"G1 Z{_f(z)} F{plunge:g}")
        lines.append(f"G1 X{_f(x1 - corner)} Y{_f(y0)} F{feed:g}")
        lines.append(f"G3 X{_f(x1)} Y{_f(y0 + corner)} I0 J{_f(corner)}")
        lines.append(f"G1 X{_f(x1)} Y{_f(y1 - corner)}")
        lines.append(f"G3 X{_f(x1 - corner)} Y{_f(y1)} I{_f(-corner)} J0")
        lines.append(f"G1 X{_f(x0 + corner)} Y{_f(y1)}")
        lines.append(f"G3 X{_f(x0)} Y{_f(y1 - corner)} I0 J{_f(-corner)}")
        lines.append(f"G1 X{_f(x0)} Y{_f(y0 + corner)}")
        lines.append(f"G3 X{_f(x0 + corner)} Y{_f(y0)} I{_f(corner)} J0")
        lines.append("G0 Z5")
    lines += ["M5", "G0 X0 Y0", "M30"]
    return _finish(lines, line_numbers)


def laser_job(
    *,
    width: float = 50.0,
    height: float = 30.0,
    line_spacing: float = 0.5,
    engrave_power: float = 300.0,
    cut_power: float = 900.0,
    engrave_feed: float = 3000.0,
    cut_feed: float = 600.0,
    passes: int = 2,
    origin: tuple[float, float] = (5.0, 5.0),
    line_numbers: bool = False,
) -> str:
    """A raster engraving of an ellipse (bidirectional rows, ``M4`` dynamic power) and a cut-out.

    The cut is a rounded rectangle around it in ``passes`` passes at ``cut_power``. Power words are
    ``S`` values on the ``$30`` scale (1000 = 100 % with GRBL's default).
    """
    ox, oy = origin
    cx, cy = ox + width / 2, oy + height / 2
    a, b = width / 2 - 3, height / 2 - 3
    lines = [
        "; FabLab demo: laser engrave and cut",
        "G90 G21 G94",
        "G0 X0 Y0",
        "M4 S0",
        f"G0 X{_f(cx - a)} Y{_f(cy - b)}",
    ]
    rows = max(1, int((2 * b) / line_spacing))
    first = True
    for row in range(rows + 1):
        y = cy - b + row * line_spacing
        dy = (y - cy) / b
        if abs(dy) > 1:
            continue
        half = a * math.sqrt(max(0.0, 1 - dy * dy))
        if half < 0.2:
            continue
        xs, xe = (cx - half, cx + half) if row % 2 == 0 else (cx + half, cx - half)
        lines.append(f"G0 X{_f(xs)} Y{_f(y)} S0")
        feed_word = f" F{engrave_feed:g}" if first else ""
        first = False
        lines.append(f"G1 X{_f(xe)} S{engrave_power:g}{feed_word}")
    corner = 3.0
    x0, y0, x1, y1 = ox, oy, ox + width, oy + height
    for p in range(1, passes + 1):
        lines.append(f"; cut pass {p}/{passes}")
        lines.append(f"G0 X{_f(x0 + corner)} Y{_f(y0)} S0")
        lines.append(f"G1 X{_f(x1 - corner)} Y{_f(y0)} S{cut_power:g} F{cut_feed:g}")
        lines.append(f"G3 X{_f(x1)} Y{_f(y0 + corner)} I0 J{_f(corner)}")
        lines.append(f"G1 X{_f(x1)} Y{_f(y1 - corner)}")
        lines.append(f"G3 X{_f(x1 - corner)} Y{_f(y1)} I{_f(-corner)} J0")
        lines.append(f"G1 X{_f(x0 + corner)} Y{_f(y1)}")
        lines.append(f"G3 X{_f(x0)} Y{_f(y1 - corner)} I0 J{_f(-corner)}")
        lines.append(f"G1 X{_f(x0)} Y{_f(y0 + corner)}")
        lines.append(f"G3 X{_f(x0 + corner)} Y{_f(y0)} I{_f(corner)} J0")
    lines += ["S0", "M5", "G0 X0 Y0", "M2"]
    return _finish(lines, line_numbers)


def _finish(lines: list[str], line_numbers: bool) -> str:
    if line_numbers:
        numbered = []
        n = 10
        for line in lines:
            if line.startswith(("(", ";")):
                numbered.append(line)
            else:
                numbered.append(f"N{n} {line}")
                n += 10
        lines = numbered
    return "\n".join(lines) + "\n"


def write_job(path: str | Path, text: str) -> Path:
    """Write a job to ``path`` and return it."""
    target = Path(path)
    target.write_text(text, encoding="ascii")
    return target


def demo_job(kind: str, *, scale: float = 1.0) -> str:
    """A job for the demo: ``kind`` is ``cnc`` or ``laser``; ``scale`` < 1 makes it shorter."""
    if kind == "cnc":
        return cnc_pocket_job(width=max(12.0, 60 * scale), height=max(10.0, 40 * scale), line_numbers=True)
    if kind == "laser":
        return laser_job(width=max(10.0, 50 * scale), height=max(8.0, 30 * scale), line_numbers=True)
    raise ValueError(f"unknown job kind {kind!r} (cnc or laser)")
