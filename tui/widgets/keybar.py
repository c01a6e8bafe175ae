"""The key bar at the bottom: every key of the screen with what it does, wrapped onto a second
line when the terminal is narrow (Textual's Footer is one line and cuts keys off at 80 columns).
Notifications are lifted above it: Textual leaves room for a one-line footer only, so a toast
would otherwise sit on the bar's first line."""

from __future__ import annotations

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static


class KeyBar(Static):
    COMPONENT_CLASSES = {"keybar--key", "keybar--disabled"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom; height: auto; max-height: 3; padding: 0 1;
        background: $footer-background; color: $footer-description-foreground;
    }
    KeyBar > .keybar--key { color: $footer-key-foreground; text-style: bold; }
    KeyBar > .keybar--disabled { text-style: dim; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._draw()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def on_resize(self) -> None:
        self.call_after_refresh(self._draw)

    def _bindings_changed(self, _screen: Screen) -> None:
        if self.is_attached:
            self.call_after_refresh(self._draw)

    def items(self) -> list[tuple[str, str, bool]]:
        """(key, description, enabled) per action, in binding order; focus decides which."""
        seen: set[str] = set()
        items = []
        for _key, (_node, binding, enabled, _tooltip) in self.screen.active_bindings.items():
            if not binding.show or not binding.description or binding.action in seen:
                continue
            seen.add(binding.action)
            items.append((self.app.get_key_display(binding), binding.description, enabled))
        if self.app.ENABLE_COMMAND_PALETTE:
            items.append(("^p", "palette", True))
        return items

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        try:
            key_style = self.get_component_rich_style("keybar--key")
            dim = self.get_component_rich_style("keybar--disabled")
        except KeyError:  # styles not applied yet (the screen is still being built)
            self.call_after_refresh(self._draw)
            return
        width = max(20, self.size.width or self.app.size.width - 2)
        pieces = [Text.assemble((key, key_style), " ", description,
                                style=dim if not enabled else "")
                  for key, description, enabled in self.items()]
        wrapped = [_wrap(pieces, width, gap) for gap in (2, 1)]
        lines = min(wrapped, key=len)  # two spaces between keys unless one space saves a line
        self.update(Text("\n").join(lines))
        for rack in self.screen.query("#textual-toastrack"):  # the screen's notifications
            rack.styles.margin = (0, 0, len(lines), 0)


def _wrap(pieces: list[Text], width: int, gap: int) -> list[Text]:
    lines: list[Text] = [Text()]
    for piece in pieces:
        if lines[-1].cell_len and lines[-1].cell_len + gap + piece.cell_len > width:
            lines.append(Text())
        if lines[-1].cell_len:
            lines[-1].append(" " * gap)
        lines[-1].append_text(piece)
    return lines
