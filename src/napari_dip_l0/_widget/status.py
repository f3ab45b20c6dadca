"""Where a DIP-ℓ0 run is, as an evented object the form listens to (careamics-napari's signals/ pattern).

No Qt here: the form connects ``status.events.state`` (lock or unlock the
settings), ``status.events.text`` (the status line) and ``status.events.done``
/ ``total`` (the progress bar).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from psygnal import evented


class RunState(Enum):
    """Where a DIP-ℓ0 run is. idle → running → (stopping →) idle."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"


TRANSITIONS = {
    RunState.IDLE: {RunState.RUNNING},
    RunState.RUNNING: {RunState.STOPPING, RunState.IDLE},
    RunState.STOPPING: {RunState.IDLE},
}


@evented
@dataclass
class RunStatus:
    """The run's state, its status line, and iterations done of the total (0 of 0: busy, no count yet)."""

    state: RunState = RunState.IDLE
    text: str = "idle"
    done: int = 0
    total: int = 0

    def move(self, state: RunState) -> None:
        """Go to ``state``; ``RuntimeError`` for a transition the state machine does not have."""
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"DIP-ℓ0 widget: no transition from {self.state.value} to {state.value}")
        self.state = state

    @property
    def idle(self) -> bool:
        return self.state is RunState.IDLE


class Activity:
    """One run in napari's activity dock (:class:`napari.utils.progress`), beside the widget's own bar, so it
    is seen, as napari's other long tasks are, while the dock is scrolled away or hidden."""

    def __init__(self):
        self._bar = None
        self._closed = False
        self._opening = False

    def show(self, done: int, total: int, desc: str) -> None:
        """Iterations ``done`` of ``total``; the first call opens the bar under ``desc``."""
        from napari.utils import progress

        if self._closed:
            return
        if self._bar is None:
            if self._opening:  # a tick that Qt ran while the bar is being made: the next one counts
                return
            self._opening = True
            try:
                bar = progress(total=total, desc=desc)
            finally:
                self._opening = False
            if self._closed:  # making it let Qt run the run's end: it must not outlive the run
                bar.close()
                return
            self._bar = bar
        step = min(done, total) - self._bar.n
        if step > 0:
            self._bar.update(step)

    def close(self, done: int | None = None) -> None:
        """Close the bar, counted to ``done`` first where the run ended there; later calls do nothing."""
        self._closed = True
        if self._bar is not None:
            if done is not None and done > self._bar.n:
                self._bar.update(min(done, self._bar.total) - self._bar.n)
            self._bar.close()
            self._bar = None
