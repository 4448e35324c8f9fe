"""The trainer's progress bar (conf/callbacks/default.yaml): on a terminal the bar Lightning shows by default,
otherwise Lightning's tqdm bars printing a whole line now and then (codistill.progress), so a log redirected
to a file or kept by CI shows how training goes in readable lines, not carriage-return redraws."""

import sys

from pytorch_lightning.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm

from codistill.progress import WholeLines, is_terminal


class LineTqdm(WholeLines, Tqdm):
    """Lightning's tqdm bar (numbers padded so they do not jitter), printing whole lines off a terminal."""


class LineProgressBar(TQDMProgressBar):
    """TQDMProgressBar whose bars are `LineTqdm` on stdout. Lines need none of the terminal layout Lightning
    asks its bars for (stacked positions, the screen's width), and each reports the rate since it started."""

    def _bar(self, desc: str) -> Tqdm:
        return LineTqdm(desc=desc, disable=self.is_disabled, file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT)

    def init_sanity_tqdm(self) -> Tqdm:
        return self._bar(self.sanity_check_description)

    def init_train_tqdm(self) -> Tqdm:
        return self._bar(self.train_description)

    def init_validation_tqdm(self) -> Tqdm:
        return self._bar(self.validation_description)

    def init_test_tqdm(self) -> Tqdm:
        return self._bar(self.test_description)

    def init_predict_tqdm(self) -> Tqdm:
        return self._bar(self.predict_description)


def progress_bar(refresh_rate: int = 1, leave: bool = False) -> ProgressBar:
    """When stdout is a terminal, the bar Lightning adds when given none (Rich's: rich is installed with
    codistill); otherwise a LineProgressBar."""
    return (RichProgressBar if is_terminal(sys.stdout) else LineProgressBar)(refresh_rate=refresh_rate, leave=leave)
