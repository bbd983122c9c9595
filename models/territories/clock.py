"""The engine's safety-net clock: CPU seconds of the calling thread.

Every budget that shapes a design is an iteration count; ``time_limit_s`` only
stops a run that would go on too long. Measured in the thread's CPU time, that
limit does not move with machine load (other processes, or designs running side
by side in other threads), so the same inputs give the same plan on a busy machine.
"""

from __future__ import annotations

import time


def clock() -> float:
    """CPU seconds used by this thread so far."""
    return time.thread_time()
