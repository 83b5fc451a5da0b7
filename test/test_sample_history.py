"""SampleHistory: sorted inserts (newest-first fast path and out-of-order), same-stamp replacement, pruning."""

from __future__ import annotations

import random

from handypriors_core.io.sample_history import SampleHistory


def test_inserts_in_any_order_stay_sorted_and_a_repeated_stamp_replaces_its_value():
    rng = random.Random(4)
    stamps = list(range(0, 200, 2))
    order = stamps[:50] + rng.sample(stamps[50:], 50)  # in order first (the append path), then shuffled
    history = SampleHistory()
    for stamp in order:
        history.insert(stamp, -stamp)
    history.insert(10, "again")
    history.insert(198, "newest again")
    assert history.stamps == stamps
    assert history.values[5] == "again" and history.values[-1] == "newest again"
    assert all(v == -s for s, v in zip(history.stamps, history.values) if s not in (10, 198))
    assert history.bracket(11) == (5, 6, 0.5, 0)


def test_prune_drops_only_what_is_older_than_the_window():
    history = SampleHistory()
    for stamp in (100, 150, 200, 250):
        history.insert(stamp, stamp)
    history.prune(200)  # nothing older than 250 - 200
    assert history.stamps == [100, 150, 200, 250]
    history.prune(100)
    assert history.stamps == [150, 200, 250] and history.values == [150, 200, 250]
    history.prune(0)
    assert history.stamps == [250]
    SampleHistory().prune(10)  # empty: nothing to do
