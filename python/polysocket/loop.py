"""polysocket's asyncio event loop.

An ordinary ``asyncio.SelectorEventLoop`` whose selector waits in the Rust
runtime (``_native.Reactor``): a ``polysocket.Server`` started on it runs
its connections on the loop's own thread, and each message is read, handed
to its handler and answered in one step, without a thread hop. Everything
else (tasks, timers, other sockets, subprocesses, signals) is asyncio as
usual. ``polysocket.run`` / ``polysocket.serve`` use it; any other loop
gets the server on runtime threads instead.
"""

from __future__ import annotations

import asyncio
import selectors
import sys
from typing import Any, Awaitable, List, Optional, Tuple, TypeVar

from . import _native

__all__ = ["EventLoop", "new_event_loop", "run"]

T = TypeVar("T")


class RuntimeSelector(selectors._BaseSelectorImpl):  # type: ignore[name-defined]
    """A selector whose ``select`` runs the runtime until a registered
    descriptor is ready, the timeout passes or a server handler ran."""

    def __init__(self) -> None:
        super().__init__()
        self.reactor = _native.Reactor()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().register(fileobj, events, data)
        try:
            self.reactor.register(key.fd, events)
        except BaseException:
            super().unregister(fileobj)
            raise
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = super().unregister(fileobj)
        self.reactor.unregister(key.fd)
        return key

    def select(self, timeout: Optional[float] = None) -> List[Tuple[selectors.SelectorKey, int]]:
        keys = self._fd_to_key
        ready = []
        for fd, events in self.reactor.select(timeout):
            key = keys.get(fd)
            if key is not None:
                ready.append((key, events & key.events))
        return ready

    def close(self) -> None:
        self.reactor.close()
        super().close()


class EventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop on the Rust runtime (see the module)."""

    def __init__(self) -> None:
        super().__init__(RuntimeSelector())

    @property
    def reactor(self) -> "_native.Reactor":
        return self._selector.reactor  # type: ignore[attr-defined]


def new_event_loop() -> EventLoop:
    return EventLoop()


def run(main: Awaitable[T], *, debug: Optional[bool] = None) -> T:
    """``asyncio.run(main)`` on polysocket's loop."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    # Python 3.9/3.10: asyncio.run's steps, with our loop.
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
