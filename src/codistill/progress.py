"""Progress bars that suit where they are written. On a terminal a bar is tqdm's, redrawn in place; into a
file or a CI log those redraws (a carriage return each) pile up by the thousand, so there a bar prints a
whole line now and then instead. `tqdm` is codistill's own bars' class; `codistill.models.progress_bar`
gives Lightning's bars the same behaviour, and `QuietLibraryBars` switches off the short bars transformers
and datasets draw for themselves ("Loading weights", "Writing model shards", map and filter bars).
"""

import os
import sys
import time

from hydra.experimental.callback import Callback
from tqdm import std

LINE_SECONDS = 30.0  # off a terminal, a bar's `mininterval` unless given or set by TQDM_MININTERVAL


def is_terminal(stream) -> bool:
    """Whether `stream` is an interactive terminal (a closed stream or a stand-in without `isatty` is not)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class WholeLines:
    """A tqdm mixin. When the bar's file is not a terminal, the bar prints its state as one line ending in a
    newline: at most every `mininterval` seconds (default LINE_SECONDS), when it reaches its total, and
    as it closes, never the same state twice; no carriage returns, no cursor moves. On a terminal the bar is
    the mixed-in tqdm class, unchanged."""

    def __init__(self, *args, **kwargs):
        self._whole_lines = not is_terminal(kwargs.get("file") or sys.stderr)  # tqdm writes to stderr by default
        if self._whole_lines:
            kwargs.setdefault("mininterval", float(os.environ.get("TQDM_MININTERVAL", LINE_SECONDS)))
        self._line_at, self._line_state = time.monotonic(), None
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if not self._whole_lines:
            return super().display(msg, pos)
        closing = msg == ""  # tqdm clears a bar with an empty message as it closes
        state = (self.desc, self.n, self.total)
        done = closing or (self.total is not None and self.n >= self.total)
        now = time.monotonic()
        if state != self._line_state and (done or now - self._line_at >= self.mininterval):
            self.fp.write(f"{self}\n")
            self.fp.flush()
            self._line_at, self._line_state = now, state
        return False  # nothing is left on screen to clear

    def clear(self, nolock=False):
        if not self._whole_lines:
            super().clear(nolock)

    def close(self):
        if self._whole_lines:
            self.leave = False  # so tqdm closes by clearing (display(msg="")), which prints the last line
        super().close()


class tqdm(WholeLines, std.tqdm):  # tqdm's own name for its class: a drop-in
    """tqdm's bar, printing whole lines when its file is not a terminal (see WholeLines)."""


class QuietLibraryBars(Callback):
    """A Hydra callback (conf/hydra/default.yaml, so every app has it): as a job starts with stderr not a
    terminal, switch off transformers' (and the Hub's) and datasets' own progress bars through their APIs."""

    def on_job_start(self, config, **kwargs) -> None:
        if not is_terminal(sys.stderr):
            import datasets  # here, not at the top: both are slow to import and most users of this module
            from transformers.utils import logging  # (codistill's own bars) need neither

            logging.disable_progress_bar()
            datasets.disable_progress_bars()
