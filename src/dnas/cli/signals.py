"""Stop a loop cleanly on SIGTERM or Ctrl-C: the handler only sets a flag, and the loop checks it
between units of work (a measured architecture, a generation), saves its state and stops."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopRequested(Exception):
    """A signal asked the run to stop; raised by ``StopFlag.check`` where stopping is safe."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum  # what a shell reports for a process the signal ended
        super().__init__(self.name)

    @property
    def name(self) -> str:
        return "an interrupt (Ctrl-C)" if self.signum == signal.SIGINT else "SIGTERM"


class StopFlag:
    """Set by the signal handler; ``check()`` raises ``StopRequested`` once it is."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def check(self) -> None:
        if self.signum is not None:
            raise StopRequested(self.signum)


@contextmanager
def stop_on_signals(
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
) -> Iterator[StopFlag]:
    """Inside the block, ``signals`` set the yielded flag instead of ending the process; the
    previous handlers come back afterwards. Outside the main thread (where Python cannot install
    handlers) the flag is never set and the signals keep their handlers."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        flag.signum = signum

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
