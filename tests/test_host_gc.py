"""host_gc: the startup heap frozen out of full collections' reach, and full collections counted."""

import gc

from spmd_infer.host_gc import FullCollections, freeze_startup_heap, thaw


def test_freeze_moves_live_objects_out_of_reach_and_thaw_gives_them_back():
    assert gc.get_freeze_count() == 0
    kept = [[k] for k in range(1000)]  # containers the collector tracks
    try:
        frozen = freeze_startup_heap()
        assert frozen == gc.get_freeze_count() >= len(kept)
        young_and_old = {id(o) for g in range(3) for o in gc.get_objects(generation=g)}
        assert id(kept) not in young_and_old and id(kept[0]) not in young_and_old  # in the permanent generation
    finally:
        thaw()
    assert gc.get_freeze_count() == 0


def test_full_collections_counts_generation_two_only():
    with FullCollections() as full:
        gc.collect(0)
        gc.collect(1)
        assert full.count == 0
        gc.collect()
        gc.collect(2)
    assert full.count == 2 and full.seconds > 0
    gc.collect()  # the callback is gone once the block ends
    assert full.count == 2
