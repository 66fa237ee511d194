"""The graceful stop on SIGTERM/SIGINT: readiness false first, then stop accepting, drain, exit 0.

Order (docs/architecture.md 7; Kubernetes sends SIGTERM while endpoints still route):
1. the signal flips readiness to false at once (`on_draining`), but the listener stays open for
   `delay_s` so load balancers can take the pod out before connections get refused;
2. then uvicorn closes the listener (`on_closing`: gRPC stops taking calls at the same moment), lets
   every accepted request finish, and runs the app's lifespan shutdown, which drains the member queues
   (Ensemble.drain); all of step 2 shares one `grace_s`, so a stop takes at most delay + grace
   (the Kubernetes and Compose grace periods are set from that sum);
3. the process exits 0: a requested stop is not a crash. A second signal forces the exit.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Generator
from types import FrameType

import uvicorn

log = logging.getLogger("service.lifecycle")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, *, delay_s: float, on_draining: Callable[[], None],
        on_closing: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.delay_s = delay_s
        self.on_draining, self.on_closing = on_draining, on_closing
        self.stop_at: float | None = None  # monotonic time the listener closes

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Unlike uvicorn's own, the captured signal is not re-raised afterwards: after an orderly
        # drain the process exits 0, which Kubernetes and Compose read as a clean stop.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stop_at is not None:  # a second signal: stop waiting for anything
            log.warning("second %s: forcing exit", signal.Signals(sig).name)
            self.should_exit = self.force_exit = True
            return
        self.stop_at = time.monotonic() + self.delay_s
        self.on_draining()
        log.info(
            "%s: not ready; closing the listener in %.1f s, then draining",
            signal.Signals(sig).name,
            self.delay_s,
        )
        if self.delay_s == 0 or not self.started:  # nothing routes to a server still starting
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.stop_at is not None and time.monotonic() >= self.stop_at:
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list | None = None) -> None:
        if self.on_closing is not None:  # the grace period starts now, for HTTP and gRPC alike
            self.on_closing()
        await super().shutdown(sockets)
