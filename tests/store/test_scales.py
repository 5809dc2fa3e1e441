"""Manual scales (``shoal scale``) in the state database: replaced as a whole, kept on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.errors import StoreError
from shoal.store import Store


def test_scales_are_replaced_as_a_whole_and_read_back(store: Store) -> None:
    assert store.scales() == {}
    store.set_scales({"web": 3, "api": 0}, now=10.0)
    assert store.scales() == {"api": 0, "web": 3}
    store.set_scales({"web": 1}, now=11.0)
    assert store.scales() == {"web": 1}
    store.set_scales({}, now=12.0)
    assert store.scales() == {}


def test_scales_outlive_the_store_that_wrote_them(db_path: Path) -> None:
    with Store.open(db_path) as first:
        first.set_scales({"web": 5}, now=1.0)
    with Store.open(db_path) as again:  # what a daemon started after a crash reads
        assert again.scales() == {"web": 5}


def test_a_negative_scale_is_refused_and_nothing_changes(store: Store) -> None:
    store.set_scales({"web": 2}, now=1.0)
    with pytest.raises(StoreError):
        store.set_scales({"api": 1, "web": -1}, now=2.0)
    assert store.scales() == {"web": 2}  # the transaction rolled back whole
