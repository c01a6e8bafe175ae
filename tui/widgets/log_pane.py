"""The lines of a log, drawn a screen at a time: follow, search highlights and soft wrap.

Only the rows on screen are rendered (a line API `ScrollView`), so a log of 100,000 lines
scrolls as fast as one of ten. With wrap on, each line takes as many rows as its width needs;
a prefix sum maps rows to lines.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate

from rich.cells import cell_len, chop_cells
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

MAX_LINES = 100_000  # the oldest lines go beyond this (the file keeps them)
MATCH = Style(color="black", bgcolor="yellow")
CURRENT = Style(color="black", bgcolor="dark_orange", bold=True)


class LogPane(ScrollView, can_focus=True):
    """Lines of text; `follow` keeps the end in view until the user scrolls up."""

    DEFAULT_CSS = """
    LogPane { height: 1fr; background: $surface; scrollbar-gutter: stable; }
    """

    follow: reactive[bool] = reactive(True)
    wrap: reactive[bool] = reactive(False)

    class StateChanged(Message):
        """Follow, wrap, the lines or the current match changed: the status line redraws."""

    def __init__(self, *, max_lines: int = MAX_LINES, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.max_lines = max_lines
        self.lines: list[str] = []
        self.dropped = 0  # lines let go from the top (max_lines)
        self._widest = 0
        self._starts: list[int] = [0]  # wrap: first row of each line, and the total at the end
        self._wrap_width = 0
        self._wrapped = False  # how the rows are laid out now (`wrap` may have just changed)
        self._pattern: re.Pattern[str] | None = None
        self.matches: list[tuple[int, int, int]] = []  # (line, start, end)
        self.current: int | None = None  # index into matches
        self._auto = False  # our own scrolling, not the user's

    # ---- content ---------------------------------------------------------------------------
    def set_lines(self, lines: list[str]) -> None:
        self.lines, self.dropped, self._widest = [], 0, 0
        self.matches, self.current = [], None
        self.append(lines)

    def append(self, lines: list[str]) -> None:
        if not lines and self.lines:
            return
        first = len(self.lines)
        self.lines.extend(lines)
        self._widest = max([self._widest, *(cell_len(line) for line in lines)])
        self._find(first)
        excess = len(self.lines) - self.max_lines
        if excess > self.max_lines // 10:  # in batches: a drop re-indexes every match
            del self.lines[:excess]
            self.dropped += excess
            self.matches = [(i - excess, s, e) for i, s, e in self.matches if i >= excess]
            self.current = None
        self._layout(full=excess > self.max_lines // 10, first=first)
        if self.follow:
            self._to_end()
        self.refresh()
        self.post_message(self.StateChanged())

    # ---- rows ------------------------------------------------------------------------------
    def _width(self) -> int:
        return max(1, self.scrollable_content_region.width)

    def _cuts(self, line: str, width: int) -> list[int]:
        """Character offsets where a wrapped line breaks."""
        if line.isascii():
            return list(range(width, len(line), width))
        cuts, at = [], 0
        for piece in chop_cells(line, width)[:-1]:
            at += len(piece)
            cuts.append(at)
        return cuts

    def _layout(self, full: bool = True, first: int = 0) -> None:
        self._wrapped = self.wrap
        if not self.wrap:
            self.virtual_size = Size(self._widest, len(self.lines))
            return
        width = self._width()
        if full or width != self._wrap_width or len(self._starts) != first + 1:
            self._wrap_width, first, self._starts = width, 0, [0]
        rows = (len(self._cuts(line, width)) + 1 for line in self.lines[first:])
        self._starts += list(accumulate(rows, initial=self._starts[-1]))[1:]
        self.virtual_size = Size(width, self._starts[-1])

    def _row_of(self, index: int, char: int = 0) -> int:
        if not self._wrapped:
            return index
        cuts = self._cuts(self.lines[index], self._wrap_width)
        return self._starts[index] + bisect_right(cuts, char)

    def _line_at(self, row: int) -> tuple[int, int]:
        """(line, wrapped row within it) of a screen row."""
        if not self._wrapped:
            return row, 0
        index = bisect_right(self._starts, row) - 1
        return index, row - self._starts[index]

    def on_resize(self) -> None:
        if self.wrap and self._width() != self._wrap_width:
            self._relayout()

    def watch_wrap(self) -> None:
        self._relayout()
        self.post_message(self.StateChanged())

    def _relayout(self) -> None:
        """Wrap changed or the width did: keep the same line at the top (or the end)."""
        top, _ = self._line_at(round(self.scroll_y))
        self._layout()
        if self.follow:
            self._to_end()
        elif self.lines:
            self._scroll_after_layout(self._row_of(min(top, len(self.lines) - 1)))
        self.refresh()

    # ---- follow ----------------------------------------------------------------------------
    def _to_end(self) -> None:
        """After the next layout: the scroll bars and the largest scroll follow the lines."""
        self.scroll_end(animate=False, force=True, x_axis=False)

    def _scroll_after_layout(self, y: int, x: int | None = None) -> None:
        def scroll() -> None:
            self._auto = True  # up, but not by the user's hand
            try:
                self.scroll_to(x=x, y=y, animate=False, force=True, immediate=True)
            finally:
                self._auto = False

        self.call_after_refresh(scroll)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        # moving up by the user's hand stops following; the view shrinking under it does not
        if new < old and new < self.max_scroll_y - 0.5 and not self._auto:
            self.follow = False

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self._to_end()
        self.post_message(self.StateChanged())

    def action_scroll_end(self) -> None:
        """`end` follows again, as `F` does."""
        self.follow = True
        self._to_end()

    # ---- search ----------------------------------------------------------------------------
    def search(self, term: str) -> int:
        """Highlight every match of `term` (smart case: all lower case ignores case); the
        number of matches."""
        self._pattern = re.compile(re.escape(term), 0 if term != term.lower() else re.I) \
            if term else None
        self.matches, self.current = [], None
        self._find(0)
        self.refresh()
        self.post_message(self.StateChanged())
        return len(self.matches)

    def _find(self, first: int) -> None:
        if self._pattern is None:
            return
        for index in range(first, len(self.lines)):
            self.matches += [(index, m.start(), m.end())
                             for m in self._pattern.finditer(self.lines[index])]

    def next_match(self, forward: bool = True) -> bool:
        """Go to the next (or previous) match after the current one, or after the top of the
        view; round the end. False when there is none."""
        if not self.matches:
            return False
        if self.current is not None:
            step = 1 if forward else -1
            self.current = (self.current + step) % len(self.matches)
        else:
            top, _ = self._line_at(round(self.scroll_y))
            lines = [m[0] for m in self.matches]
            if forward:
                self.current = bisect_right(lines, top - 1) % len(self.matches)
            else:
                self.current = (bisect_right(lines, top) - 1) % len(self.matches)
        self._show_current()
        return True

    def _show_current(self) -> None:
        index, start, end = self.matches[self.current or 0]
        self.follow = False
        row = self._row_of(index, start)
        height = self.scrollable_content_region.height
        x = None
        if not self._wrapped:
            width, cells = self._width(), cell_len(self.lines[index][:start])
            if not self.scroll_x <= cells < self.scroll_x + width - (end - start):
                x = max(0, cells - width // 4)
        self._scroll_after_layout(max(0, row - height // 2), x)
        self.refresh()
        self.post_message(self.StateChanged())

    # ---- drawing ---------------------------------------------------------------------------
    def _text(self, index: int) -> Text:
        line = self.lines[index]
        text = Text(line, no_wrap=True)
        if self._pattern is not None:
            current = self.matches[self.current] if self.current is not None else None
            for m in self._pattern.finditer(line):
                here = current is not None and current[0] == index and current[1] == m.start()
                text.stylize(CURRENT if here else MATCH, m.start(), m.end())
        return text

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        style = self.rich_style
        index, part = self._line_at(scroll_y + y)
        if not 0 <= index < len(self.lines):
            return Strip.blank(width, style)
        text = self._text(index)
        if self._wrapped:
            cuts = self._cuts(self.lines[index], self._wrap_width)
            pieces = text.divide(cuts)
            text = pieces[part] if part < len(pieces) else Text("")
            scroll_x = 0
        text.stylize_before(style)
        strip = Strip(text.render(self.app.console), text.cell_len)
        return strip.crop_extend(scroll_x, scroll_x + width, style)
