"""Keys handled one at a time, each after the one before has had its effect.

Textual sends each key to the widget focused when the app takes it off its queue, but a Tab
moves focus only later, when the focused widget's own queue gets to it; and a key that opens a
dialog does so only once the list has handled it. Keys that arrive in one burst (a paste, a
laggy SSH link: `n`, Tab, `3`, Tab, `16` in one write) were all sent to the first target: the
list, or the dialog's first field, where characters are not bound and were dropped, while the
Tabs, bubbling up to the screen's bindings, still moved focus. So the job was submitted with
the defaults. `OrderedKeys` holds each key until the previous one has been handled all the
way up to the app, and any screen it opened or closed is mounted and focused: a burst then
types exactly what the same keys typed one by one would, in every dialog.

Some keys take effect through a background worker: ctrl+s in the new-job dialog writes the
queue in a thread, and only then asks whether to start a worker. A key typed right behind it
(`n`, "not now") must answer that question, not open a second dialog on the list. Workers in
`key_effect_groups` that a key starts are part of its effect: the next key waits for them,
and for any screen their outcome opens.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from textual import events
from textual.app import App
from textual.dom import DOMNode

# A handler that never finishes must not freeze the keyboard: past this, the next key goes.
KEY_SETTLE_LIMIT_S = 2.0


class OrderedKeys(App):
    """An App whose keys are dispatched in order, each to the focus the one before left."""

    # Worker groups whose outcome may open a screen: a key that starts one is handled once
    # it has finished (the list's own refreshes are not waited for: j j j stays quick).
    key_effect_groups: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held_keys: deque[events.Key] = deque()
        self._key_in_flight = False
        self._settling: asyncio.Task[None] | None = None

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and not event.is_forwarded:
            self._held_keys.append(event)
            if not self._key_in_flight:
                await self._dispatch_next_key()
            return
        await super().on_event(event)

    @property
    def keys_pending(self) -> int:
        """Keys taken from the terminal and not yet handled to the end (0: all typed)."""
        return len(self._held_keys) + self._key_in_flight

    async def _dispatch_next_key(self) -> None:
        if not self._held_keys or not self.screen_stack:  # all typed, or the app is closing
            self._held_keys.clear()
            self._key_in_flight = False
            return
        self._key_in_flight = True
        event = self._held_keys.popleft()
        target: DOMNode = self.focused or self.screen
        before = set(self.workers)
        await super().on_event(event)  # Textual's own dispatch: bindings, then the focus
        self._settling = asyncio.create_task(self._settle(target, before))

    async def _settle(self, target: DOMNode, before: set[Any]) -> None:
        try:
            await asyncio.wait_for(self._handled(target, before), KEY_SETTLE_LIMIT_S)
        except (asyncio.TimeoutError, RuntimeError):
            pass  # the next key goes anyway
        finally:
            if not self.call_later(self._dispatch_next_key):  # closing: nothing more to type
                self._held_keys.clear()

    async def _handled(self, target: DOMNode, before: set[Any]) -> None:
        """Until the key sent to `target` has been through every queue on its way up (a
        marker behind it in each), then until the screen it leaves is mounted and the focus
        it asked for (`focus()` goes through the app's queue) is set; then the same after
        each effect worker it started (or whose start it caused) has finished."""
        node: DOMNode | None = target
        while node is not None:
            await _behind(node)
            node = node.parent
        await self._screen_settled()
        while started := [w for w in self.workers if w not in before
                          and w.group in self.key_effect_groups]:
            before.update(started)
            await asyncio.gather(*(_finished(w) for w in started))
            for worker in started:  # the message it posted on its way out
                await _behind(worker.node)
            await self._screen_settled()

    async def _screen_settled(self) -> None:
        while True:
            screen = self.screen
            if not screen.is_mounted:  # pushed by a message, its compose still to come
                await screen._mounted_event.wait()
            await _behind(screen)
            await _behind(self)
            if self.screen is screen:
                return


async def _finished(worker: Any) -> None:
    with contextlib.suppress(Exception):  # failed or cancelled is finished too
        await worker.wait()


async def _behind(node: DOMNode) -> None:
    """Wait until `node` has handled every message queued for it before this call."""
    done = asyncio.Event()
    if node.call_later(done.set):
        await done.wait()
