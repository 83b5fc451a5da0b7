"""What a command shows while it runs: the progress line on stderr, and warp kept quiet on stdout."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress", "quiet_warp"]


class Progress:
    """A progress line on stderr: ``[#####.....] 12/60  3.4 fps  quality 0.87 tracking``.

    On a terminal it redraws in place; otherwise it prints a line every 10 % (logs stay readable).
    """

    def __init__(self, total: int, label: str = "tracking", enabled: bool = True, stream=None) -> None:
        self.total = max(1, total)
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.last_decile = -1
        self.done = 0

    def update(self, done: int, quality: float, status: str) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.perf_counter()
        fps = done / max(now - self.start, 1e-9)
        frac = min(1.0, done / self.total)
        bar = "#" * round(24 * frac)
        line = (f"{self.label} [{bar:<24}] {done}/{self.total}  {fps:5.2f} fps  quality {quality:.2f} "
                f"{status}")
        if self.tty:
            if now - self.last_draw > 0.1 or done >= self.total:
                self.stream.write("\r" + line + "\x1b[K")
                self.stream.flush()
                self.last_draw = now
        else:
            decile = int(10 * frac)
            if decile > self.last_decile:
                self.last_decile = decile
                self.stream.write(line + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def quiet_warp() -> None:
    """Keep warp's kernel-cache chatter off stdout (the CLI's stdout is for results)."""
    try:
        import warp

        warp.config.quiet = True  # warp < 1.10
        if hasattr(warp, "LOG_WARNING"):
            warp.config.log_level = warp.LOG_ERROR  # warp >= 1.10: no greeting, kernel-load or no-CUDA lines
    except Exception:  # noqa: BLE001 - warp is optional for the eval command
        pass
