"""The job's progress bar: tokens done of the tokens to send, tokens/s, ETA and the cost so far.

Shown (with tqdm, on standard error) when ``progress=True``, or by default when standard error is a
terminal. The cost is the billed tokens (``usage.total_tokens`` of each answer) at the contract's
price, 0.5 yuan per million tokens unless the client is told another.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

PRICE_PER_MILLION_TOKENS = 0.5  # yuan, the contract's price


class Progress:
    """Thread-safe progress reporting; a no-op when not shown."""

    def __init__(
        self,
        total_tokens: int,
        *,
        show: bool | None,
        texts: int,
        cached: int,
        price_per_million: float = PRICE_PER_MILLION_TOKENS,
    ) -> None:
        self.price_per_million = price_per_million
        self.billed_tokens = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._bar: Any = None
        if show is None:
            show = bool(getattr(sys.stderr, "isatty", lambda: False)())
        if show and total_tokens > 0:
            from tqdm.auto import tqdm

            desc = f"embedding {texts} texts" + (f" ({cached} cached)" if cached else "")
            self._bar = tqdm(
                total=total_tokens,
                unit="tok",
                unit_scale=True,
                desc=desc,
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
            )
            self._bar.set_postfix_str(self._cost_text(), refresh=False)

    @property
    def cost_yuan(self) -> float:
        return self.billed_tokens * self.price_per_million / 1e6

    def _cost_text(self) -> str:
        return f"¥{self.cost_yuan:.4f}"

    def advance(self, planned_tokens: int, billed_tokens: int) -> None:
        with self._lock:
            self.requests += 1
            self.billed_tokens += billed_tokens
            if self._bar is not None:
                self._bar.set_postfix_str(self._cost_text(), refresh=False)
                self._bar.update(planned_tokens)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None


__all__ = ["PRICE_PER_MILLION_TOKENS", "Progress"]
