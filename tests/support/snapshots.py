"""Comparing read-model snapshots made in different ways."""

from __future__ import annotations

from projections.stores import SnapshotValue


def normalised(snapshot: dict[str, SnapshotValue]) -> dict[str, SnapshotValue]:
    """`snapshot` with counters at 0 taken as absent: an incremental build may move a
    count away from a key that a rebuild never touches."""
    out: dict[str, SnapshotValue] = {}
    for key, value in snapshot.items():
        if isinstance(value, dict):
            value = {f: v for f, v in value.items() if v != b"0"}
            if not value:
                continue
        out[key] = value
    return out
