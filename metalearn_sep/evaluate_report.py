"""The report of a MUSDB18 evaluation: SiSEC figures beside the published ones, as Markdown, CSV and a box plot.

:func:`write_report` writes, atomically, into an evaluation's folder:

- ``report.md``: the SDR table (this checkpoint, then :data:`~metalearn_sep.data.published.PUBLISHED`),
  with museval all four metrics of this checkpoint, each track's medians, and the citations;
- ``report.csv``: one row per method and metric (``method, metric, drums, bass, other,
  vocals, mean, tracks, reference``);
- ``boxplot.png``: per source, the distribution over tracks of each track's median over
  frames (the numbers the SiSEC median is taken over), one panel per metric, with the
  published Meta-TasNet figures marked on the SDR panel.

Figures are in dB: median over 1 s frames, then over tracks; "mean" is the mean of the
four sources' figures, as in the published tables.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from . import SOURCES
from .atomic import atomic_write, atomic_write_text
from .data.published import PUBLISHED, PublishedScores
from .plots import InlineFigure
from .sisec import Aggregate

REPORT_FILES: dict[str, str] = {"markdown": "report.md", "csv": "report.csv", "boxplot": "boxplot.png"}
"""The report's files in an evaluation folder."""

THIS = "this checkpoint"
"""The method name of the evaluated checkpoint's rows."""


def _cells(values: object, digits: int = 2) -> list[str]:
    return ["–" if np.isnan(v) else f"{v:.{digits}f}" for v in np.asarray(values, dtype=np.float64)]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|:--" + "|--:" * (len(header) - 1) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def _method_row(name: str, values: object) -> list[str]:
    values = np.asarray(values, dtype=np.float64)
    return [name, *_cells(values), *_cells([values.mean()])]


def sdr_table(result: Aggregate, published: tuple[PublishedScores, ...] = PUBLISHED) -> list[str]:
    """Markdown lines: this checkpoint's SDR per source and mean, then each published row."""
    rows = [_method_row(f"**{THIS}**", result.scores["SDR"])]
    rows += [_method_row(f"{p.method} [{k}]", [p.sdr[s] for s in SOURCES]) for k, p in enumerate(published, 1)]
    return _table(["SDR (dB)", *SOURCES, "mean"], rows)


def markdown(result: Aggregate, title: str, fast: bool, published: tuple[PublishedScores, ...] = PUBLISHED) -> str:
    """The whole ``report.md``."""
    how = ("metalearn_sep.metrics.framewise_sdr (museval's BSS Eval v4 SDR to 0.01 dB; SDR only)" if fast
           else "BSS Eval v4 through museval")
    lines = [f"# {title}", "", f"Scored with {how}: median over 1 s frames per track, then median over "
             f"{len(result.tracks)} track(s), in dB; mean = mean of the four sources. Published rows: the 50 MUSDB18 "
             "test tracks.", "", *sdr_table(result, published)]
    if len(result.scores) > 1:
        lines += ["", f"## All metrics, {THIS}", "",
                  *_table(["metric", *SOURCES, "mean"], [_method_row(m, v) for m, v in result.scores.items()])]
    per_track = result.per_track["SDR"]
    lines += ["", "## Per track (SDR, median over frames)", "",
              *_table(["track", *SOURCES], [[name, *_cells(row)] for name, row in zip(result.tracks, per_track)])]
    lines += ["", "## References", ""]
    lines += [f"{k}. {p.method}: {p.citation}. Figures: {p.figures_from}." for k, p in enumerate(published, 1)]
    return "\n".join(lines) + "\n"


def csv_text(result: Aggregate, published: tuple[PublishedScores, ...] = PUBLISHED) -> str:
    """The whole ``report.csv``: this checkpoint's rows (one per metric), then the published SDR rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "metric", *SOURCES, "mean", "tracks", "reference"])
    for metric, values in result.scores.items():
        writer.writerow([THIS, metric, *(f"{v:.4f}" for v in values), f"{np.mean(values):.4f}", len(result.tracks), ""])
    for p in published:
        writer.writerow([p.method, "SDR", *(f"{p.sdr[s]:.2f}" for s in SOURCES), f"{p.mean:.4f}", 50,
                         f"{p.citation}; figures: {p.figures_from}"])
    return buffer.getvalue()


def boxplot(result: Aggregate, published: tuple[PublishedScores, ...] = PUBLISHED[:1]) -> Figure:
    """One panel per metric, one box per source over the tracks' medians; ``published`` marked on SDR."""
    fig = InlineFigure(figsize=(0.6 + 3.0 * len(result.per_track), 3.2), layout="constrained")
    axes = fig.subplots(1, len(result.per_track), squeeze=False)[0]
    positions = np.arange(1, len(SOURCES) + 1)
    for ax, (metric, values) in zip(axes, result.per_track.items()):
        columns = [v[~np.isnan(v)] for v in values.T]
        ax.boxplot(columns, positions=positions, widths=0.5)
        for x, column in zip(positions, columns):
            ax.plot(np.full(len(column), x) + np.linspace(-0.12, 0.12, len(column)), column, ".", color="grey", alpha=0.6)
        if metric == "SDR":
            for marker, p in zip("D^s", published):
                ax.plot(positions, [p.sdr[s] for s in SOURCES], marker, linestyle="none", label=f"{p.method} (published median)")
            if published:
                ax.legend(fontsize="small")
        ax.set_xticks(positions, list(SOURCES))
        ax.set_ylabel(f"{metric} (dB), median over frames")
        ax.set_title(f"{metric}, {len(result.tracks)} track(s)")
    return fig


def write_report(out_dir: str | Path, result: Aggregate, title: str, fast: bool) -> tuple[dict[str, Path], str]:
    """Write ``report.md``, ``report.csv`` and ``boxplot.png`` into ``out_dir``.

    Returns:
        ``(files, summary)``: :data:`REPORT_FILES`' keys -> paths, and the text to print
        (title, SDR table, and with museval the table of all metrics).
    """
    out_dir = Path(out_dir)
    files = {key: out_dir / name for key, name in REPORT_FILES.items()}
    atomic_write_text(files["markdown"], markdown(result, title, fast))
    atomic_write_text(files["csv"], csv_text(result))
    figure = boxplot(result)
    atomic_write(files["boxplot"], lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    lines = [title, *sdr_table(result)]
    if len(result.scores) > 1:
        lines += ["", *_table(["metric", *SOURCES, "mean"], [_method_row(m, v) for m, v in result.scores.items()])]
    return files, "\n".join(lines)
