"""``--compare-modes``: brute and quick on one server in one run, and the issue's target for quick.

Target: quick finds a configuration within 5% of brute's best objective in at
most 30% of brute's time. Quick's pick is judged by brute's own measurement
of it (brute measured every grid point under the same conditions), so the
comparison is not decided by the noise of two different measurements; quick's
own figure is shown beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ds_triton_perf.report.document import Table
from ds_triton_perf.tuning.measurement import Measurement
from ds_triton_perf.tuning.objective import Objective

if TYPE_CHECKING:
    from ds_triton_perf.tuning.run import TuneRun

WITHIN = 0.05
TIME_SHARE = 0.30


@dataclass(frozen=True)
class ModeComparison:
    objective: Objective
    brute_best: Measurement | None
    brute_s: float
    brute_complete: bool
    quick_best: Measurement | None
    quick_s: float
    quick_pick_by_brute: Measurement | None
    brute_count: int
    quick_count: int

    @property
    def time_share(self) -> float | None:
        return self.quick_s / self.brute_s if self.brute_s else None

    @property
    def gap(self) -> float | None:
        """How much worse quick's pick is than brute's best, by brute's measurements (a share)."""
        best, pick = self.brute_best, self.quick_pick_by_brute
        if best is None or pick is None or best.score is None or pick.score is None or not best.score:
            return None
        return (best.score - pick.score) / abs(best.score)

    def verdicts(self) -> list[dict[str, Any]]:
        gap, share = self.gap, self.time_share
        shown = self.objective.shown
        pick = self.quick_pick_by_brute
        return [
            {"target": "quick's pick vs brute's best objective", "bar": f"within {WITHIN:.0%}",
             "measured": None if gap is None else f"{gap:.1%} worse",
             "verdict": "not measured" if gap is None else "met" if gap <= WITHIN else "missed",
             "detail": (f"brute best {_text(shown(self.brute_best.score if self.brute_best else None))}, "
                        f"quick's pick {_text(shown(pick.score if pick else None))} (by brute's measurement)"
                        + ("" if self.brute_complete else "; brute did not finish its grid")),
             "figure": "pareto"},
            {"target": "quick's time vs brute's", "bar": f"≤ {TIME_SHARE:.0%}",
             "measured": None if share is None else f"{share:.0%}",
             "verdict": "not measured" if share is None else "met" if share <= TIME_SHARE else "missed",
             "detail": f"{self.quick_s / 60:.1f} min vs {self.brute_s / 60:.1f} min", "figure": "pareto"},
        ]

    def text(self) -> str:
        return (f"brute measured {self.brute_count} candidates in {self.brute_s / 60:.1f} min; quick "
                f"{self.quick_count} measurements in {self.quick_s / 60:.1f} min. Times are the search's own "
                "measurement time (reloads included), each mode from an empty journal.")

    def table(self) -> Table:
        shown = self.objective.shown
        rows = [
            ["brute", self.brute_count, round(self.brute_s / 60, 1),
             self.brute_best.candidate if self.brute_best else None,
             shown(self.brute_best.score) if self.brute_best else None, None],
            ["quick", self.quick_count, round(self.quick_s / 60, 1),
             self.quick_best.candidate if self.quick_best else None,
             shown(self.quick_best.score) if self.quick_best else None,
             shown(self.quick_pick_by_brute.score) if self.quick_pick_by_brute else None],
        ]
        return Table(["mode", "measurements", "minutes", "best settings",
                      f"its objective ({self.objective.unit})",
                      "same settings measured by brute"], rows)


def compare_modes(run: TuneRun) -> ModeComparison:
    brute, quick = run.outcomes["brute"], run.outcomes["quick"]
    pick = None
    if quick.best is not None:
        pick = next((m for m in brute.full if m.candidate == quick.best.candidate), None)
    return ModeComparison(run.options.objective, brute.best, brute.spent_s, brute.complete, quick.best,
                          quick.spent_s, pick, len(brute.full), len(quick.measurements))


def _text(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"
