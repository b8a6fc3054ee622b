"""What a run says on stderr: a progress bar on a terminal, one plain line per logging interval in a log file."""

from __future__ import annotations

import sys
from typing import Any


class Console:
    """Log lines (``[reslab] ...``) and the training bar; silent when disabled (``--quiet``, ranks other than 0)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None

    @property
    def interactive(self) -> bool:
        return self.enabled and sys.stderr.isatty()

    def open_bar(self, total: int, initial: int, desc: str) -> None:
        if self.interactive:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="it", dynamic_ncols=True)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def advance(self, **postfix: str) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix(**postfix)

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:  # above the bar, not through it
            self.bar.write(f"[reslab] {message}", file=sys.stderr)
        else:
            print(f"[reslab] {message}", file=sys.stderr, flush=True)
