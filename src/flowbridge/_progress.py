"""One progress display for every long loop (sampling, SMC, posterior sampling, tuning).

On a terminal it is a tqdm bar that stays when done; where the output goes to a file or a CI log it
prints a line at every tenth of the work instead of redrawing per step, so a log stays readable.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """Counts ``total`` units of work.

    Args:
        total: units of work (steps, or time in a span for adaptive solvers).
        desc: what is being done, e.g. ``"sampling (heun)"``.
        unit: the unit's name.
        stream: where to write (standard error by default).
    """

    def __init__(self, total: float, desc: str, unit: str = "step", stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit = float(total), desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0.0
        self.start = time.perf_counter()
        self._bar: Any = None
        self._next_tenth = 1
        if self.stream.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=True, file=self.stream)

    def update(self, n: float = 1.0) -> None:
        """Records ``n`` more units done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        while self.total > 0 and self._next_tenth <= 10 and self.done >= self.total * self._next_tenth / 10 - 1e-9:
            elapsed = time.perf_counter() - self.start
            shown = f"{int(self.done)}/{int(self.total)}" if self.unit != "time" else f"t={self.done:.3g} of {self.total:.3g}"
            print(f"{self.desc}: {self._next_tenth * 10:3d}% ({shown} {self.unit}s, {elapsed:.1f} s)", file=self.stream, flush=True)
            self._next_tenth += 1

    def close(self) -> None:
        """Ends the display (the bar stays on screen)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
