"""Rank a stress job's scenarios from worst to best.

A scenario's WER is micro-averaged over its severities (Σ edits / Σ reference words, paper §6),
not a mean of per-cell rates, so a severity whose transcript is long weighs by its words. The
ranking uses the base path, which every job has, so rankings of different jobs compare.
"""

from __future__ import annotations

from service.scoring import EMPTY_SCORE, Score
from service.stress.schemas import CellResult, PathResult, ScenarioSummary, StressJob, Summary
from simulation.scenarios import all_scenarios

RANKED_BY = "base"


def _as_score(p: PathResult) -> Score:
    return Score(hits=p.hits, substitutions=p.substitutions, deletions=p.deletions, insertions=p.insertions,
                 reference_words=p.reference_words, hypothesis_words=p.hypothesis_words,
                 char_edits=p.char_edits, reference_chars=p.reference_chars)


def summarise(job: StressJob) -> Summary:
    """The per-scenario summary of the results so far, worst first."""
    by_scenario: dict[str, list[CellResult]] = {}
    for cell in job.results:
        by_scenario.setdefault(cell.scenario, []).append(cell)
    known = all_scenarios()
    rows: list[ScenarioSummary] = []
    for name, cells in by_scenario.items():
        totals: dict[str, Score] = {}
        for cell in cells:
            for path, result in cell.paths.items():
                totals[path] = totals.get(path, EMPTY_SCORE) + _as_score(result)
        rows.append(ScenarioSummary(
            scenario=name, public_name=cells[0].public_name, group=known[name].group,
            severities=[c.severity for c in cells],
            wer={p: round(s.wer, 6) for p, s in totals.items()},
            cer={p: round(s.cer, 6) for p, s in totals.items()},
            hallucinations={p: sum(c.paths[p].hallucination for c in cells if p in c.paths) for p in totals},
            omissions={p: sum(c.paths[p].omission for c in cells if p in c.paths) for p in totals}))
    order = {name: i for i, name in enumerate(job.request.scenarios)}
    rows.sort(key=lambda r: (-r.wer.get(RANKED_BY, 0.0), order.get(r.scenario, 0)))
    clean = {p: round(r.wer, 6) for p, r in job.clean.paths.items()} if job.clean else {}
    return Summary(ranked_by=RANKED_BY, clean_wer=clean, scenarios=rows)
