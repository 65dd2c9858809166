"""What the daemon does to the interpreter before it serves."""

import gc
import weakref

from mailwatch.daemon.server import settle_garbage_collector


class Cycle:
    """Garbage only the cyclic collector can free."""


def test_start_up_objects_are_frozen_out_of_later_full_collections():
    # Cyclic garbage is collected first (never frozen for ever); everything alive is then exempt.
    # Counted after a collection: earlier tests leave garbage behind that must not be counted as alive.
    gc.collect()
    alive = len(gc.get_objects())
    garbage = Cycle()
    garbage.self = garbage
    gone = weakref.ref(garbage)
    del garbage
    try:
        settle_garbage_collector()
        assert gone() is None
        assert gc.get_freeze_count() >= alive * 0.9
        assert len(gc.get_objects()) < alive * 0.1  # what a full collection still traverses
    finally:
        gc.unfreeze()
