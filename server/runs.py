"""A request whose events come from a task of its own (moments, chapters), read by its route
as an `Ask`'s are: any number of events, then exactly one `done` or `error`, whoever ends it
(its work complete or failed, its client gone, the server shutting down), so no reader
waits for ever. It counts as an open ask and as one of its tenant's answers while it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from server.errors import ApiError
from server.metrics import Metrics
from server.scoring import ScoringFailed

log = logging.getLogger("longvu.runs")


class Run:
    def __init__(self, metrics: Metrics, on_end: Callable[[], None]) -> None:
        self.metrics, self.on_end = metrics, on_end
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.closed = False
        self._task: asyncio.Task | None = None
        metrics.asks_open.inc()

    def start(self, work: Coroutine[Any, Any, Any]) -> None:
        self._task = asyncio.create_task(self._main(work))

    def emit(self, kind: str, payload: Any) -> None:
        if not self.closed:
            self.events.put_nowait((kind, payload))

    def end(self, kind: str, payload: Any) -> None:
        """The one terminal event; any later end is ignored."""
        if self.closed:
            return
        self.closed = True
        self.metrics.asks_open.dec()
        self.on_end()
        self.events.put_nowait((kind, payload))

    def cancel(self) -> None:
        """The client is gone: the work stops (its questions and windows end in the engine)."""
        if self._task is not None:
            self._task.cancel()

    async def _main(self, work: Coroutine[Any, Any, Any]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            self.metrics.cancelled.inc()
            self.end("error", {"code": "cancelled", "message": "the client went away"})
        except ApiError as exc:
            self.end("error", {"code": exc.code, "message": exc.message, "status": exc.status, "param": exc.param})
        except ScoringFailed as exc:
            self.end("error", exc.body)
        except Exception as exc:  # this request only
            log.error("a run failed", exc_info=exc)
            self.end("error", {"code": "internal_error", "message": f"the request failed ({type(exc).__name__})"})
        finally:
            self.end("error", {"code": "internal_error", "message": "the request ended without a result"})
