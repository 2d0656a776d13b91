"""The stress job's HTML report: a ranked per-scenario WER chart and the tables behind it.

One self-contained page: the chart is a matplotlib PNG embedded as base64 (no script, no external
request), every piece of user or model text goes through ``html.escape``, and clip links are
relative so the page works behind any prefix.
"""

from __future__ import annotations

import base64
import html
import io
import threading
import time

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from service.stress.plan import severity_key
from service.stress.schemas import StressJob
from service.stress.summary import summarise

_PATH_COLOURS = {"base": "#4c72b0", "robust": "#55a868", "routed": "#dd8452"}
# Matplotlib's font cache and text layout are not safe to first-use from many threads at once.
_RENDER_LOCK = threading.Lock()
_STYLE = ("<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
          "font-size:13px;text-align:left;vertical-align:top}th{background:#f4f4f4}.flag{color:#b00}"
          ".muted{color:#666}</style></head><body>")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def wer_chart_png(job: StressJob) -> bytes | None:
    """Horizontal bars, one group per scenario (worst at the top), one bar per path; None if no results."""
    summary = job.summary or summarise(job)
    rows = summary.scenarios
    if not rows:
        return None
    paths = job.request.paths
    height = 1.4 + 0.22 * len(rows) * (1 + 0.4 * (len(paths) - 1))
    with _RENDER_LOCK:
        fig = Figure(figsize=(8.5, height), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        bar = 0.8 / len(paths)
        for i, path in enumerate(paths):
            ys = [n + i * bar for n in range(len(rows))]
            bars = ax.barh(ys, [100 * r.wer.get(path, 0.0) for r in rows], height=bar, label=path,
                           color=_PATH_COLOURS.get(path, "#8172b2"))
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
        clean = summary.clean_wer.get("base")
        if clean is not None:
            ax.axvline(100 * clean, color="#333333", linestyle="--", linewidth=1, label="clean (base)")
        ax.set_yticks([n + (len(paths) - 1) * bar / 2 for n in range(len(rows))],
                      [r.public_name for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.margins(y=0.01)
        top = max([100 * w for r in rows for w in r.wer.values()] + [100 * (clean or 0.0), 1.0])
        ax.set_xlim(0, top * 1.12)  # room for the value labels
        ax.set_xlabel("WER (%), micro-averaged over severities")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()


def render_report(job: StressJob) -> str:
    """The whole page as a string (CPU-bound when it draws the chart: call it off the event loop)."""
    paths = job.request.paths
    png = wer_chart_png(job)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Stress report {_e(job.id)}</title>",
        _STYLE,
        "<h1>Stress report</h1>",
        _overview(job),
    ]
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>WER by scenario, worst first</h2><img alt='WER per scenario and path' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append(_ranking_table(job, paths))
    parts.append(_cells_table(job, paths))
    parts.append("</body></html>")
    return "".join(parts)


def _overview(job: StressJob) -> str:
    req = job.request
    reference_note = ("No reference text was given: the base model's transcript of the clean audio is the "
                      "reference, so WER measures how far each corruption moves the transcript from the "
                      "clean one, not accuracy." if req.reference_source == "clean_transcript"
                      else "Reference text supplied by the user.")
    rows = [
        ("Job", job.id), ("Status", job.status),
        ("Progress", f"{job.progress.done}/{job.progress.total} cells"),
        ("File", req.filename or "(unnamed)"), ("Audio", f"{req.audio_duration_s:.2f} s"),
        ("Model", req.model), ("Router mode", req.router), ("Paths", ", ".join(req.paths)),
        ("Seed", req.seed), ("Severities", ", ".join(severity_key(s) for s in req.severities)),
        ("Created", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(job.created_at))),
    ]
    if job.error:
        rows.append(("Note", job.error))
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    clean = ""
    if job.clean is not None:
        clean = "".join(f"<tr><th>clean, {_e(p)}</th><td>WER {100 * r.wer:.1f}% — {_e(r.text)}</td></tr>"
                        for p, r in job.clean.paths.items())
    reference = f"<tr><th>Reference</th><td>{_e(job.reference or '(pending)')}</td></tr>"
    return f"<table>{table}{reference}{clean}</table><p class='muted'>{_e(reference_note)}</p>"


def _ranking_table(job: StressJob, paths: list[str]) -> str:
    summary = job.summary or summarise(job)
    head = "".join(f"<th>WER {_e(p)}</th><th>CER {_e(p)}</th>" for p in paths)
    rows = []
    for rank, row in enumerate(summary.scenarios, 1):
        cells = "".join(f"<td>{100 * row.wer.get(p, 0):.1f}%</td><td>{100 * row.cer.get(p, 0):.1f}%</td>"
                        for p in paths)
        flags = ", ".join(f"{p}: {row.hallucinations.get(p, 0)}H/{row.omissions.get(p, 0)}O" for p in paths)
        rows.append(f"<tr><td>{rank}</td><td>{_e(row.public_name)}<br><span class='muted'>{_e(row.scenario)}"
                    f"</span></td><td>{_e(row.group)}</td>{cells}<td>{_e(flags)}</td></tr>")
    return ("<h2>Scenarios ranked by base WER</h2><table><tr><th>#</th><th>Scenario</th><th>Group</th>"
            f"{head}<th>Flagged cells (H = hallucination, O = omission)</th></tr>{''.join(rows)}</table>")


def _cells_table(job: StressJob, paths: list[str]) -> str:
    rows = []
    for cell in job.results:
        clip = f"clips/{_e(cell.scenario)}/{_e(severity_key(cell.severity))}.wav"
        for i, path in enumerate(paths):
            r = cell.paths.get(path)
            if r is None:
                continue
            flags = " ".join(name for name, on in (("hallucination", r.hallucination),
                                                   ("omission", r.omission)) if on)
            p = r.router.p_degraded
            route = r.router.adapter + (f" (p={p:.2f})" if p is not None else "")
            lead = (f"<td rowspan='{len(cell.paths)}'>{_e(cell.public_name)}</td>"
                    f"<td rowspan='{len(cell.paths)}'>{_e(severity_key(cell.severity))}<br>"
                    f"<a href='{clip}'>clip</a></td>") if i == 0 else ""
            rows.append(f"<tr>{lead}<td>{_e(path)}</td><td>{100 * r.wer:.1f}%</td><td>{100 * r.cer:.1f}%</td>"
                        f"<td>{r.substitutions}/{r.deletions}/{r.insertions}</td>"
                        f"<td class='flag'>{_e(flags)}</td><td>{_e(route)}</td><td>{r.latency_s:.2f}</td>"
                        f"<td>{_e(r.text)}</td></tr>")
    return ("<h2>Every cell</h2><table><tr><th>Scenario</th><th>Severity</th><th>Path</th><th>WER</th>"
            "<th>CER</th><th>S/D/I</th><th>Flags</th><th>Router</th><th>Latency (s)</th>"
            "<th>Transcript</th></tr>"
            f"{''.join(rows)}</table>")
