"""What turns a question's `inputs_embeds` into tokens: the second half of answering.

The engine (`server/engine.py`) owns the device: ingest steps and building each question's
inputs. It hands every built question to one `Decoding`, chosen at start-up: `LocalDecoding`
(continuous batching on our device, in the engine's rounds) or `RemoteDecoding` (an
OpenAI-compatible server such as vLLM, fed `prompt_embeds`). Both end every `Ask` with
exactly one terminal event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from models.build import BuiltInputs
from server.asks import Ask

if TYPE_CHECKING:
    from server.scoring import WindowScore


class Decoding(Protocol):
    wake: Callable[[], None]  # set by the engine: call it when a question ends outside its rounds

    @property
    def running(self) -> int:
        """Questions it holds."""
        ...

    @property
    def busy(self) -> bool:
        """Whether it has work for the engine's next round (device work)."""
        ...

    @property
    def has_room(self) -> bool:
        """Whether it takes another question now."""
        ...

    @property
    def unavailable(self) -> str | None:
        """Why it cannot answer now (readiness and new questions say so), else None."""
        ...

    @property
    def scoring_unavailable(self) -> str | None:
        """Why it cannot score windows (moments), else None."""
        ...

    def start(self, ask: Ask, built: BuiltInputs) -> None:
        """Take a built question (the engine's thread)."""
        ...

    def score(self, window: WindowScore, built: BuiltInputs) -> None:
        """Take a built window to score: its yes/no score from one prefill (the engine's thread)."""
        ...

    def round(self) -> None:
        """The engine's round: end what was cancelled, run what is due (the engine's thread)."""
        ...

    def end_all(self, code: str, message: str) -> None:
        """End every question it holds with this error."""
        ...

    def warm_up(self, built: BuiltInputs) -> None:
        """Run a made-up question once, so that the first real one pays no start-up costs."""
        ...

    def close(self) -> None:
        ...
