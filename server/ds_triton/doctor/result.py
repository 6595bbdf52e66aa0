"""One line of the doctor's report: what was checked, the verdict, and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    PASS = "PASS"
    WARN = "WARN"  # works here, but a likely way to break it (does not fail the run)
    FAIL = "FAIL"
    SKIP = "SKIP"  # does not apply to this machine


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.verdict.value:<4}  {self.name}: {self.detail}"
        return f"{text} -> fix: {self.fix}" if self.fix and self.verdict is not Verdict.PASS else text


def passed(name: str, detail: str) -> Check:
    return Check(name, Verdict.PASS, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, Verdict.FAIL, detail, fix)
