"""Following model aliases while the service runs: new versions are loaded and checked off the loop thread.

A thread looks at the store every ``model.poll_interval_s``. When the
champion's (or challenger's) alias names another version than the one in
use, it loads that version and runs every check on it (``load_checked``),
then leaves the ready scorer for the loop, which swaps it in between two
batches (``take``). A version that fails a check is refused once, with one
log line and a metric, and the running version stays. A store that does not
answer is retried with backoff; the running versions stay meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models import (
    BatchScorer,
    ModelError,
    ModelLoadError,
    ModelStoreError,
    ModelStoreUnavailableError,
    UnknownAliasError,
)
from models.store import ModelStore

__all__ = ["CHALLENGER", "CHAMPION", "ReadyVersion", "VersionWatcher"]

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
# Backoff after a store error: the poll interval times 2, 4, ... up to this factor.
MAX_BACKOFF_FACTOR = 16


@dataclass(frozen=True)
class ReadyVersion:
    """A version loaded and checked for a role; ``scorer`` None means the role's alias was removed."""

    role: str
    scorer: BatchScorer | None


class VersionWatcher:
    """Resolves aliases on a thread of its own and prepares the versions they name."""

    def __init__(
        self,
        *,
        store: ModelStore,
        model: str,
        aliases: dict[str, str],
        load: Callable[[Path, BatchScorer | None], BatchScorer],
        running: dict[str, BatchScorer | None],
        interval_s: float,
        on_refused: Callable[[str, str, str], None] | None = None,
    ) -> None:
        """``aliases``: role -> alias followed; ``load(path, running scorer)`` loads and checks a version;
        ``running``: role -> the scorer in use; ``on_refused(role, version, reason)`` counts a refusal."""
        self.store = store
        self.model = model
        self.aliases = aliases
        self.load = load
        self.interval_s = interval_s
        self.on_refused = on_refused
        self.store_ok = True
        self._running = dict(running)
        self._refused: set[tuple[str, str, str]] = set()  # (role, version, sha256) refused once already
        self._ready: dict[str, ReadyVersion] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._promote = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-versions", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def take(self) -> list[ReadyVersion]:
        """Versions ready to swap in (loop thread); from now on they count as running."""
        if not self._ready:
            return []
        with self._lock:
            ready, self._ready = list(self._ready.values()), {}
        return ready

    def request_promotion(self) -> None:
        """Ask for the challenger's version to become the champion's (done on the watcher's thread)."""
        self._promote = True
        self._wake.set()

    def check_now(self) -> None:
        """Look at the aliases at once rather than at the next interval."""
        self._wake.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            wait = self.interval_s * min(2 ** failures, MAX_BACKOFF_FACTOR) if failures else self.interval_s
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self._promote:
                    self._promote = False
                    promoted = self.store.promote(self.model, self.aliases[CHALLENGER], self.aliases[CHAMPION])
                    logger.info("promoted %s version %s: alias %s now names it", self.model, promoted.version,
                                self.aliases[CHAMPION])
                for role in self.aliases:
                    self._follow(role)
            except ModelStoreUnavailableError as exc:
                failures += 1
                self.store_ok = False
                logger.warning("model store: %s; keeping the running versions, next look in %.0fs", exc,
                               self.interval_s * min(2 ** failures, MAX_BACKOFF_FACTOR))
                continue
            except Exception:  # a bug here must not end alias following silently
                failures += 1
                logger.exception("following the model aliases failed; trying again")
                continue
            failures = 0
            self.store_ok = True

    def _follow(self, role: str) -> None:
        alias = self.aliases[role]
        running = self._running.get(role)
        try:
            stored = self.store.resolve(self.model, alias)
        except UnknownAliasError:
            if role == CHALLENGER:
                if running is not None:  # the challenger alias was removed: stop shadowing
                    logger.info("alias %s of %s is gone: no challenger from the next batch", alias, self.model)
                    self._hand(ReadyVersion(role, None))
                return
            raise
        except ModelStoreUnavailableError:
            raise
        except ModelStoreError as exc:  # the alias names a version the store does not hold, or an unreadable one
            self._refuse((role, alias, str(exc)), role, alias, "missing", exc, running)
            return
        if running is not None and running.artifact.version == stored.version:
            return
        token = (role, stored.version, str(stored.manifest.get("sha256")))
        if token in self._refused:
            return
        try:
            scorer = self.load(stored.path, self._running.get(CHAMPION))
        except ModelError as exc:
            reason = exc.reason if isinstance(exc, ModelLoadError) else "unreadable"
            self._refuse(token, role, stored.version, reason, exc, running)
            return
        logger.info("model %s version %s (alias %s) loaded and checked: swapping it in at the next batch",
                    self.model, stored.version, alias)
        self._hand(ReadyVersion(role, scorer))

    def _refuse(self, token: tuple[str, str, str], role: str, version: str, reason: str, exc: Exception,
                running: BatchScorer | None) -> None:
        """One log line and one count per refused version (not one per poll)."""
        if token in self._refused:
            return
        self._refused.add(token)
        logger.error("model %s %s (alias %s) refused [%s], keeping %s: %s", self.model, version,
                     self.aliases[role], reason, running.artifact.version if running is not None else "none", exc)
        if self.on_refused is not None:
            self.on_refused(role, version, reason)

    def _hand(self, ready: ReadyVersion) -> None:
        with self._lock:
            self._ready[ready.role] = ready
        self._running[ready.role] = ready.scorer
