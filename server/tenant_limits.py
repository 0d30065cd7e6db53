"""How much work one tenant may have at once in this process: answers (waiting or running,
`LONGVU_TENANT_MAX_RUNNING`) and ingest jobs (`LONGVU_TENANT_MAX_JOBS`); beyond, 429 with
`Retry-After`, naming the limit, while other tenants are served. No limit by default."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable

from server.errors import ApiError
from server.tenants import tenant_of


class TenantLimits:
    def __init__(self, max_running: int | None, max_jobs: int | None) -> None:
        self.max_running, self.max_jobs = max_running, max_jobs
        self._answers: Counter[str] = Counter()
        self._lock = threading.Lock()  # answers end on the engine's thread

    def check_jobs(self, tenant: str, running: Iterable[str]) -> None:
        """Before a new ingest job: `running` are the scoped ids of this process's jobs."""
        if self.max_jobs is not None and sum(tenant_of(i) == tenant for i in running) >= self.max_jobs:
            raise ApiError(429, "tenant_limit", f"this tenant has {self.max_jobs} videos being processed already "
                           "(LONGVU_TENANT_MAX_JOBS); try again when one is done", {"Retry-After": "10"})

    def answer_started(self, tenant: str) -> Callable[[], None]:
        """Count an answer of `tenant` (429 beyond the limit); returns what ends it (an
        Ask's `on_end`, which it calls once)."""
        with self._lock:
            if self.max_running is not None and self._answers[tenant] >= self.max_running:
                raise ApiError(429, "tenant_limit", f"this tenant has {self.max_running} answers running already "
                               "(LONGVU_TENANT_MAX_RUNNING); try again shortly", {"Retry-After": "1"})
            self._answers[tenant] += 1
        return lambda: self._answer_ended(tenant)

    def _answer_ended(self, tenant: str) -> None:
        with self._lock:
            self._answers[tenant] -= 1

    def answers(self, tenant: str) -> int:
        return self._answers[tenant]
