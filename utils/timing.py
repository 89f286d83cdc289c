"""Wall-clock time per phase of a long job, so a user sees where the time goes (the notebook prints it)."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager


class PhaseTimer:
    """Collects seconds per named phase: `with timer("CNN"): ...`; `timer.table()` is a markdown table."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def table(self) -> str:
        total = time.perf_counter() - self.start
        lines = ["| phase | seconds | share |", "|---|---|---|"]
        lines += [f"| {k} | {v:.1f} | {v / max(total, 1e-9):.0%} |" for k, v in self.seconds.items()]
        lines.append(f"| total (since the timer started; {os.cpu_count()} CPU cores) | {total:.1f} | 100% |")
        return "\n".join(lines)
