"""The read models of issue 4, as pure functions of a citizen's kept state.

`citizens` (:mod:`.projection`) is the one projection that keeps that state and writes
every model: checkpoint timelines (:mod:`.checkpoint`), eligibility (derived when asked,
:mod:`.eligibility`), statistics counters (:mod:`.statistics`), arrivals
(:mod:`.arrivals`) and work lists (:mod:`.worklists`). One projection keeps each
citizen's state once (one hash field per citizen), which is what fits the memory budget.
"""
