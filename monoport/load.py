"""Is this instance too busy to take new work? Pure rules over the hub's lag (no I/O).

Theory of operation:

* A Python process is full long before ``--max-conns`` when its app is
  slow: a CPU-heavy handler holds the hub, every greenlet waits, and the
  hub's *lag* (how late a short sleep wakes up, measured by
  :meth:`monoport.ops.stats.Stats.measure_lag`) grows. No proxy in front can see
  that; the process itself can.
* ``--max-lag SECONDS`` turns that measure into admission: while the
  instance is *lagging*, new connections and new Socket.IO sessions spill to
  the least-loaded peer that is not lagging itself (see
  :mod:`monoport.balancer`); existing sessions and keep-alive connections
  stay where they are, and a forwarded-in connection is never bounced on.
* No flapping: lagging starts after :data:`RISE` samples in a row above the
  threshold and ends after :data:`FALL` samples in a row below half of it
  (a sample every :data:`SAMPLE_INTERVAL` seconds), so one slow request
  does not move traffic, and a steady load does not make it swing back and
  forth.
"""

from __future__ import annotations

from typing import Final

#: Seconds between two lag samples while --max-lag is set (1 s otherwise, for the metrics only).
SAMPLE_INTERVAL: Final = 0.25
#: Samples above --max-lag, in a row, that make the instance lagging (a sustained moment: 0.75 s).
RISE: Final = 3
#: Samples below half of --max-lag, in a row, that end it (2 s): the gap between the two is the hysteresis.
FALL: Final = 8


class Hysteresis:
    """A two-threshold switch over a stream of samples."""

    def __init__(self, high: float, low: float | None = None, rise: int = RISE, fall: int = FALL) -> None:
        if low is None:
            low = high / 2
        if not 0 <= low <= high:
            raise ValueError("expected 0 <= low <= high")
        self.high, self.low, self.rise, self.fall = high, low, rise, fall
        #: the switch's state
        self.on = False
        self._run = 0
        #: times the switch turned on (stats and metrics)
        self.turned_on = 0

    def observe(self, value: float) -> bool:
        """Take one sample; return the state after it."""
        if not self.on:
            self._run = self._run + 1 if value > self.high else 0
            if self._run >= self.rise:
                self.on, self._run = True, 0
                self.turned_on += 1
        else:
            self._run = self._run + 1 if value < self.low else 0
            if self._run >= self.fall:
                self.on, self._run = False, 0
        return self.on


def least_loaded_key(lag: float, in_app: int, free: int) -> tuple[float, int, int]:
    """Sort key for a peer that may take new work: least lag, then fewest requests in its app, then most room.

    Lags are compared in whole milliseconds, so that measurement noise does not
    outweigh a real difference in requests or free capacity.
    """
    return round(lag * 1000), in_app, -free
