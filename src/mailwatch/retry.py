"""Capped exponential backoff with jitter, shared by every retry loop."""

import random


def backoff_s(attempt: int, initial_s: float, maximum_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry `attempt` (1-based): doubling from `initial_s`, capped, jittered.

    The jitter (50-100 %) keeps many clients that failed together from retrying together.
    """
    return min(maximum_s, initial_s * 2 ** max(attempt - 1, 0)) * rng.uniform(0.5, 1.0)
