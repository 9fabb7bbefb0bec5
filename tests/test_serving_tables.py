"""The tables a version serves: built from a log, and brought up to date with new clicks."""

from __future__ import annotations

import numpy as np

from mmrec.data.catalogue import Catalogue
from mmrec.data.interactions import Interactions
from mmrec.export.serving_tables import ServingTables, merge_history


def tables() -> ServingTables:
    catalogue = Catalogue.build([str(i) for i in range(6)], ["x"] * 6)
    log = Interactions.build(users=["a", "a", "a", "b"], items=[0, 1, 2, 3],
                             timestamps=[1, 2, 3, 4])
    return ServingTables.from_interactions(catalogue, log, history_length=3)


def test_merge_keeps_each_item_once_newest_first_as_serving_does():
    assert merge_history([7, 3], [3, 5, 9], 4) == [7, 3, 5, 9]
    assert merge_history([], [1, 2], 4) == [1, 2]
    assert merge_history([4, 4, 4], [], 2) == [4]


def test_new_clicks_are_merged_counted_and_new_users_appended():
    old = tables()
    assert old.frozen_history(0) == [2, 1, 0] and old.data_until == 4.0
    new = old.with_events(["c", "a", "a"], np.array([4, 5, 1]), np.array([11, 13, 12]))
    assert new.user_ids.tolist() == ["a", "b", "c"]
    # a's clicks at 12 (item 1) and 13 (item 5) go ahead of the frozen [2, 1, 0]
    assert new.frozen_history(0) == [5, 1, 2]
    assert new.frozen_history(1) == [3] and new.frozen_history(2) == [4]
    seen = lambda row: new.seen_items[new.seen_indptr[row]:new.seen_indptr[row + 1]].tolist()
    assert seen(0) == [0, 1, 2, 5] and seen(2) == [4]
    np.testing.assert_allclose(new.popularity, np.log1p([1, 2, 1, 1, 1, 1]), rtol=1e-6)
    assert new.data_until == 13.0
    # the old tables are untouched
    assert old.frozen_history(0) == [2, 1, 0] and len(old.user_ids) == 2


def test_an_erased_user_loses_id_history_and_seen_items_but_keeps_the_row():
    new = tables().with_events([], np.array([], np.int64), np.array([]), erased_users=("a",))
    assert "a" not in new.user_ids.tolist() and new.user_ids[1] == "b"
    assert new.frozen_history(0) == [] and new.seen_indptr[1] == 0
    assert new.frozen_history(1) == [3]
