"""socket.io-client's reconnection backoff, which the reconnect storm's clients follow.

Kept apart from :mod:`bench.loadgen` (which monkey-patches on import) so that
tests can check it without patching themselves.
"""

#: socket.io-client's reconnectionDelay, reconnectionDelayMax (s) and randomizationFactor
RECONNECT_DELAY, RECONNECT_DELAY_MAX, RANDOMIZATION = 1.0, 5.0, 0.5


def reconnect_delay(attempt: int, rand: float) -> float:
    """``min(max, delay * 2**attempt)`` jittered by ± randomization; ``rand`` is uniform in [0, 1)."""
    base = min(RECONNECT_DELAY_MAX, RECONNECT_DELAY * 2 ** attempt)
    return max(0.0, base * (1 + RANDOMIZATION * (2 * rand - 1)))
