"""`OrderedKeys` on a bare app: a key whose effect never ends must not freeze the keyboard,
and a key behind an effect worker waits for it (the dialogs' own bursts are in
tests/test_tui_dialogs.py)."""

from __future__ import annotations

import threading

import pytest
from textual import events, work
from textual.binding import Binding

import tui.keys
from tests.test_tui import until
from tests.tui_runs import aio
from tui.keys import OrderedKeys

pytestmark = pytest.mark.slow  # a Textual app under the Pilot


class KeysApp(OrderedKeys):
    key_effect_groups = frozenset({"effect"})
    BINDINGS = [Binding("b", "block", "block"), Binding("x", "mark", "mark")]

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.seen: list[str] = []

    def action_block(self) -> None:
        self.seen.append("b")
        self.blocked()

    @work(thread=True, group="effect")
    def blocked(self) -> None:
        self.release.wait(60)
        self.call_from_thread(self.seen.append, "b done")

    def action_mark(self) -> None:
        self.seen.append("x")


def burst(app: KeysApp, *keys: str) -> None:
    for key in keys:
        event = events.Key(key, key)
        event.set_sender(app)
        app._driver.send_message(event)


@aio
async def test_a_key_behind_an_effect_worker_waits_for_it() -> None:
    app = KeysApp()
    async with app.run_test() as pilot:
        burst(app, "b", "x")
        await until(pilot, lambda: app.seen == ["b"])
        await pilot.pause(0.3)
        assert app.seen == ["b"] and app.keys_pending == 2  # x held while the worker runs
        app.release.set()
        await until(pilot, lambda: app.keys_pending == 0)
        assert app.seen == ["b", "b done", "x"]


@aio
async def test_a_key_whose_effect_never_ends_lets_the_next_one_go_after_the_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tui.keys, "KEY_SETTLE_LIMIT_S", 0.3)
    app = KeysApp()
    async with app.run_test() as pilot:
        burst(app, "b", "x", "x")
        await until(pilot, lambda: len(app.seen) == 3)
        assert app.seen == ["b", "x", "x"]  # the worker still blocks: the keys went anyway
        app.release.set()
        await until(pilot, lambda: "b done" in app.seen)
