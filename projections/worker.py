"""Supervised worker that keeps projections up to date with their applications.

One thread per context reads that application's notification log (LISTEN/NOTIFY
subscription on PostgreSQL, polling elsewhere), decodes each notification once and
applies the batch to every projection following the context. A failing projection
backs off on its own; a failing database or store restarts the context's loop with
backoff. A projection whose view is missing (never built, or lost with the store's
data) or was built by another ``version`` is rebuilt in a background thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder, Notification, Subscription
from eventsourcing.postgres import PostgresApplicationRecorder

from projections.engine import (
    DecodedBatch,
    Lag,
    Outcome,
    Projection,
    ProjectionState,
    RebuildProgress,
    apply_batch,
    load_state,
    measure_lag,
    rebuild,
    wait_for,
)
from projections.stores import ReadModelStore

logger = logging.getLogger(__name__)


class _Slot:
    """A projection's state inside the worker, guarded by its lock."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.lock = threading.Lock()
        self.state: ProjectionState | None = None
        self.rebuilding = False
        self.failures = 0
        self.retry_at = 0.0


class _PollSource:
    def __init__(self, recorder: ApplicationRecorder, after: int, idle: Callable[[], None]):
        self._recorder = recorder
        self._after = after
        self._idle = idle

    def fetch(self, limit: int) -> Sequence[Notification]:
        notifications = self._recorder.select_notifications(
            start=self._after, limit=limit, inclusive_of_start=False
        )
        if notifications:
            self._after = notifications[-1].id
        else:
            self._idle()
        return notifications

    def close(self) -> None:
        pass


class _End:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _SubscriptionSource:
    """The library's subscription, drained by a thread so batches end when it is idle."""

    def __init__(self, recorder: ApplicationRecorder, after: int, idle_timeout: float) -> None:
        self._idle_timeout = idle_timeout
        self._queue: queue.Queue[Notification | _End] = queue.Queue(maxsize=10_000)
        self._closed = threading.Event()
        self._end: _End | None = None
        self._subscription: Subscription[ApplicationRecorder] = recorder.subscribe(gt=after)
        self._thread = threading.Thread(target=self._feed, name="projection-feed", daemon=True)
        self._thread.start()

    def _put(self, item: Notification | _End) -> None:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return

    def _feed(self) -> None:
        error: BaseException | None = None
        try:
            with self._subscription as subscription:
                for notification in subscription:
                    self._put(notification)
        except BaseException as e:
            error = e
        self._put(_End(error))

    def fetch(self, limit: int) -> Sequence[Notification]:
        if self._end is not None:
            msg = "subscription ended"
            raise ConnectionError(msg) from self._end.error
        try:
            item = self._queue.get(timeout=self._idle_timeout)
        except queue.Empty:
            return []
        out: list[Notification] = []
        while True:
            if isinstance(item, _End):
                self._end = item
                if out:
                    return out
                return self.fetch(limit)
            out.append(item)
            if len(out) >= limit:
                return out
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return out

    def close(self) -> None:
        self._closed.set()
        self._subscription.stop()
        self._thread.join(timeout=5.0)


_Source = _PollSource | _SubscriptionSource


def _missed(source: _Source, app: Application[Any], cursor: int) -> bool:
    """Whether an idle subscription is behind the store: it missed a NOTIFY (the library
    reads what is recorded before its LISTEN starts, then waits for a NOTIFY with no
    timeout), and waits for the next event to read this one. Polling misses nothing."""
    if not isinstance(source, _SubscriptionSource):
        return False
    head = app.recorder.max_notification_id()
    return head is not None and head > cursor


class ProjectionWorker:
    """Keeps ``projections`` up to date in ``store`` from the applications they follow.

    ``run_forever()`` / ``start()`` + ``stop()`` run supervised threads; ``catch_up()``
    processes whatever is available in the calling thread and returns. Do not call
    ``catch_up()`` while the threads run.
    """

    def __init__(
        self,
        app_by_context: Mapping[str, Application[Any]],
        projections: Iterable[Projection],
        store: ReadModelStore,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.05,
        check_interval: float = 1.0,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        subscribe: bool | None = None,
        rebuild_progress: Callable[[str, RebuildProgress], None] | None = None,
    ) -> None:
        """``subscribe=None`` subscribes on PostgreSQL and polls on other recorders."""
        self.apps = dict(app_by_context)
        self.projections = list(projections)
        self.store = store
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.check_interval = check_interval
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._subscribe = subscribe
        self._rebuild_progress = rebuild_progress
        names = [p.name for p in self.projections]
        if len(set(names)) != len(names):
            msg = f"projection names must be unique: {names}"
            raise ValueError(msg)
        self._slots = [_Slot(p) for p in self.projections]
        self._by_name = {s.projection.name: s for s in self._slots}
        self._by_context: dict[str, list[_Slot]] = {}
        for slot in self._slots:
            for ctx in slot.projection.contexts:
                if ctx not in self.apps:
                    msg = f"{slot.projection.name} follows unknown context {ctx!r}"
                    raise ValueError(msg)
                self._by_context.setdefault(ctx, []).append(slot)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._backoff: dict[str, float] = {}

    # ------------------------------------------------------------------ public API

    def catch_up(self) -> int:
        """Process every notification available now; returns how many were read.

        Missing or outdated views are rebuilt inline; errors propagate.
        """
        for slot in self._slots:
            self._check(slot, inline=True)
        read = 0
        for ctx, slots in self._by_context.items():
            app = self.apps[ctx]
            while True:
                need = self._need(ctx, slots, supervised=False)
                if need is None:
                    break
                notifications = app.recorder.select_notifications(
                    start=need, limit=self.batch_size, inclusive_of_start=False
                )
                if not notifications:
                    break
                self._dispatch(ctx, slots, need, notifications, supervised=False)
                read += len(notifications)
        return read

    run_once = catch_up

    def start(self) -> None:
        """Start one supervised thread per context."""
        if self._threads:
            msg = "worker already started"
            raise RuntimeError(msg)
        self._stopping.clear()
        for ctx in self._by_context:
            thread = threading.Thread(
                target=self._run_context, args=(ctx,), name=f"projection-{ctx}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def run_forever(self) -> None:
        """Run until :meth:`stop` is called (from another thread or a signal handler)."""
        self.start()
        try:
            self._stopping.wait()
        finally:
            self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        self._threads = []

    def lag(self) -> dict[str, dict[str, Lag]]:
        """Per projection and context: events and seconds behind the head."""
        return measure_lag(self.store, self.apps, self.projections)

    def wait(self, position: Mapping[str, int] | str, timeout: float = 5.0) -> None:
        """Return when every projection has reached ``position`` (read-your-writes)."""
        wait_for(self.store, self.projections, position, timeout)

    def rebuild(self, name: str, progress: Callable[[RebuildProgress], None] | None = None) -> None:
        """Rebuild one projection in the calling thread; live threads switch over."""
        slot = self._by_name[name]
        with slot.lock:
            if slot.rebuilding:
                msg = f"{name} is already being rebuilt"
                raise RuntimeError(msg)
            slot.rebuilding = True
        self._run_rebuild(slot, progress)

    # ------------------------------------------------------------------- internals

    def _run_context(self, ctx: str) -> None:
        while not self._stopping.is_set():
            try:
                self._follow(ctx)
            except Exception:
                backoff = self._backoff.get(ctx, self.initial_backoff)
                logger.exception("projection loop of %s failed; restarting in %.1fs", ctx, backoff)
                self._backoff[ctx] = min(backoff * 2, self.max_backoff)
                if self._stopping.wait(backoff):
                    return

    def _idle(self) -> None:
        self._stopping.wait(self.poll_interval)

    def _open(self, app: Application[Any], after: int) -> _Source:
        recorder = app.recorder
        use_subscription = self._subscribe
        if use_subscription is None:
            use_subscription = isinstance(recorder, PostgresApplicationRecorder)
        if use_subscription:
            return _SubscriptionSource(recorder, after, self.poll_interval)
        return _PollSource(recorder, after, self._idle)

    def _follow(self, ctx: str) -> None:
        app, slots = self.apps[ctx], self._by_context[ctx]
        source: _Source | None = None
        cursor = 0
        last_check = 0.0
        received = False
        try:
            while not self._stopping.is_set():
                if time.monotonic() - last_check >= self.check_interval:
                    for slot in slots:
                        self._check(slot, inline=False)
                    if source is not None and not received and _missed(source, app, cursor):
                        logger.warning("subscription to %s missed a notification: reopening", ctx)
                        source.close()
                        source = None
                    received = False
                    last_check = time.monotonic()
                else:
                    for slot in slots:
                        if slot.state is None:
                            self._check(slot, inline=False)
                need = self._need(ctx, slots, supervised=True)
                if need is None:
                    self._idle()
                    continue
                if source is None or need < cursor:
                    if source is not None:
                        source.close()
                    source = self._open(app, need)
                    cursor = need
                notifications = source.fetch(self.batch_size)
                self._backoff[ctx] = self.initial_backoff
                if notifications:
                    received = True
                    self._dispatch(ctx, slots, cursor, notifications, supervised=True)
                    cursor = notifications[-1].id
        finally:
            if source is not None:
                source.close()

    def _need(self, ctx: str, slots: Iterable[_Slot], *, supervised: bool) -> int | None:
        """Lowest position in ``ctx`` among projections ready to apply."""
        now = time.monotonic()
        lowest: int | None = None
        for slot in slots:
            with slot.lock:
                if slot.state is None or (supervised and slot.retry_at > now):
                    continue
                pos = slot.state.position(ctx)
            lowest = pos if lowest is None else min(lowest, pos)
        return lowest

    def _dispatch(
        self,
        ctx: str,
        slots: Iterable[_Slot],
        after: int,
        notifications: Sequence[Notification],
        *,
        supervised: bool,
    ) -> None:
        batch = DecodedBatch(self.apps[ctx].mapper, notifications)
        for slot in slots:
            if supervised and slot.retry_at > time.monotonic():
                continue
            try:
                self._apply(slot, ctx, after, batch)
            except Exception:
                if not supervised:
                    raise
                slot.failures += 1
                delay = min(self.initial_backoff * 2**slot.failures, self.max_backoff)
                logger.exception(
                    "projection %s failed on %s; retrying in %.1fs",
                    slot.projection.name,
                    ctx,
                    delay,
                )
                with slot.lock:
                    slot.state = None
                    slot.retry_at = time.monotonic() + delay

    def _apply(self, slot: _Slot, ctx: str, after: int, batch: DecodedBatch) -> None:
        with slot.lock:
            if slot.state is None:
                return
            outcome = apply_batch(self.store, slot.projection, slot.state, ctx, after, batch)
            if outcome is Outcome.STALE:
                slot.state = load_state(self.store, slot.projection)
                if slot.state is not None:
                    apply_batch(self.store, slot.projection, slot.state, ctx, after, batch)
            elif outcome is Outcome.APPLIED:
                slot.failures = 0

    def _check(self, slot: _Slot, *, inline: bool) -> None:
        """Make sure the slot's state matches the store; start a rebuild if it cannot."""
        with slot.lock:
            if slot.rebuilding or slot.retry_at > time.monotonic():
                return
            if slot.state is not None:
                if self.store.meta(slot.projection.name) == slot.state.info:
                    return
                slot.state = None
            slot.state = load_state(self.store, slot.projection)
            if slot.state is not None:
                return
            slot.rebuilding = True
        logger.warning("view of %s is missing or outdated: rebuilding", slot.projection.name)
        if inline:
            self._run_rebuild(slot, None)
        else:
            threading.Thread(
                target=self._run_rebuild_supervised,
                args=(slot,),
                name=f"rebuild-{slot.projection.name}",
                daemon=True,
            ).start()

    def _progress(self, name: str) -> Callable[[RebuildProgress], None] | None:
        callback = self._rebuild_progress
        if callback is None:
            return None
        return lambda progress: callback(name, progress)

    def _run_rebuild(self, slot: _Slot, progress: Callable[[RebuildProgress], None] | None) -> None:
        try:
            state = rebuild(
                self.store,
                slot.projection,
                self.apps,
                progress or self._progress(slot.projection.name),
            )
        finally:
            with slot.lock:
                slot.rebuilding = False
        with slot.lock:
            slot.state = state
            slot.failures = 0

    def _run_rebuild_supervised(self, slot: _Slot) -> None:
        try:
            self._run_rebuild(slot, None)
        except Exception:
            slot.failures += 1
            delay = min(self.initial_backoff * 2**slot.failures, self.max_backoff)
            logger.exception("rebuild of %s failed; retrying in %.1fs", slot.projection.name, delay)
            with slot.lock:
                slot.retry_at = time.monotonic() + delay
