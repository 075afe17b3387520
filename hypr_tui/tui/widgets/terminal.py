"""A terminal emulator widget: pyte interprets the guest's output, the Line API draws it.

Every key goes to the guest as the bytes an xterm would send (ctrl keys, arrows in
normal and application cursor mode, function keys, alt as an ESC prefix), except the
one key that leaves, which the screen holding the widget binds. The widget's size is
the guest terminal's size: a resize reaches the session as `resize(rows, cols)`.
"""

from __future__ import annotations

import asyncio

import pyte
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

# The key that leaves the terminal, as telnet's escape character.
LEAVE_KEY = "ctrl+right_square_bracket"
LEAVE_KEY_DISPLAY = "ctrl+]"

_COLOURS = {
    "black": "black", "red": "red", "green": "green", "brown": "yellow", "yellow": "yellow", "blue": "blue",
    "magenta": "magenta", "cyan": "cyan", "white": "white",
    "brightblack": "bright_black", "brightred": "bright_red", "brightgreen": "bright_green",
    "brightbrown": "bright_yellow", "brightyellow": "bright_yellow", "brightblue": "bright_blue",
    "brightmagenta": "bright_magenta", "bfightmagenta": "bright_magenta",  # sic, pyte 0.8.2's BG_AIXTERM
    "brightcyan": "bright_cyan", "brightwhite": "bright_white",
}

DECCKM = 1 << 5  # application cursor keys (private mode 1), as pyte stores private modes

_CSI = "\x1b["
_SS3 = "\x1bO"
_CURSOR_KEYS = {"up": "A", "down": "B", "right": "C", "left": "D", "home": "H", "end": "F"}
_TILDE_KEYS = {"insert": 2, "delete": 3, "pageup": 5, "pagedown": 6, "f5": 15, "f6": 17, "f7": 18, "f8": 19,
               "f9": 20, "f10": 21, "f11": 23, "f12": 24}
_SS3_KEYS = {"f1": "P", "f2": "Q", "f3": "R", "f4": "S"}
_MODIFIER_CODE = {"shift": 2, "alt": 3, "shift+alt": 4, "ctrl": 5, "shift+ctrl": 6, "ctrl+shift": 6,
                  "alt+ctrl": 7, "ctrl+alt": 7}
_PLAIN = {"enter": "\r", "tab": "\t", "shift+tab": _CSI + "Z", "escape": "\x1b", "backspace": "\x7f",
          "ctrl+at": "\x00", "ctrl+space": "\x00", "ctrl+backslash": "\x1c", "ctrl+right_square_bracket": "\x1d",
          "ctrl+circumflex_accent": "\x1e", "ctrl+underscore": "\x1f", "space": " "}


def encode_key(key: str, character: str | None, *, app_cursor: bool = False) -> bytes:
    """The bytes an xterm sends for a Textual key event."""
    if key in _PLAIN:
        if key == "backspace" and character == "\x08":
            return b"\x08"
        return _PLAIN[key].encode()
    modifiers, _, base = key.rpartition("+")
    if base in _CURSOR_KEYS:
        final = _CURSOR_KEYS[base]
        if modifiers:
            return f"{_CSI}1;{_MODIFIER_CODE.get(modifiers, 5)}{final}".encode()
        return ((_SS3 if app_cursor else _CSI) + final).encode()
    if base in _TILDE_KEYS:
        code = _TILDE_KEYS[base]
        if modifiers:
            return f"{_CSI}{code};{_MODIFIER_CODE.get(modifiers, 5)}~".encode()
        return f"{_CSI}{code}~".encode()
    if base in _SS3_KEYS:
        if modifiers:
            return f"{_CSI}1;{_MODIFIER_CODE.get(modifiers, 5)}{_SS3_KEYS[base]}".encode()
        return (_SS3 + _SS3_KEYS[base]).encode()
    if modifiers.startswith("alt") or modifiers.endswith("alt"):
        rest = key.replace("alt+", "", 1)
        inner = encode_key(rest, character, app_cursor=app_cursor) if rest != key else b""
        if not inner and character:
            inner = character.encode()
        return b"\x1b" + inner if inner else b""
    if character:
        return character.encode()
    if modifiers == "ctrl" and len(base) == 1 and base.isalpha():
        return bytes([ord(base.upper()) - 64])
    return b""


class GuestScreen(pyte.Screen):
    """pyte's screen, plus the alternate screen (modes 47/1047/1049) that `vi` and `top` use,
    and answers to the guest's queries (cursor position, device attributes)."""

    def __init__(self, columns: int, lines: int, respond) -> None:
        self._respond = respond
        self._saved: tuple | None = None
        self.title = ""
        super().__init__(columns, lines)

    def write_process_input(self, data: str) -> None:
        self._respond(data.encode())

    def set_title(self, param: str) -> None:
        self.title = param

    def set_mode(self, *modes: int, **kwargs) -> None:
        if kwargs.get("private") and any(m in (47, 1047, 1049) for m in modes):
            if self._saved is None:
                self._saved = ({y: dict(line) for y, line in self.buffer.items()},
                               self.cursor.x, self.cursor.y, self.cursor.attrs)
                self.erase_in_display(2)
            modes = tuple(m for m in modes if m not in (47, 1047, 1049))
            if not modes:
                return
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs) -> None:
        if kwargs.get("private") and any(m in (47, 1047, 1049) for m in modes):
            if self._saved is not None:
                lines, x, y, attrs = self._saved
                self._saved = None
                self.buffer.clear()
                for row, line in lines.items():
                    if row < self.lines:
                        self.buffer[row].update({col: ch for col, ch in line.items() if col < self.columns})
                self.cursor.x, self.cursor.y = min(x, self.columns - 1), min(y, self.lines - 1)
                self.cursor.attrs = attrs
                self.dirty.update(range(self.lines))
            modes = tuple(m for m in modes if m not in (47, 1047, 1049))
            if not modes:
                return
        super().reset_mode(*modes, **kwargs)

    @property
    def app_cursor(self) -> bool:
        return DECCKM in self.mode


class Terminal(Widget, can_focus=True):
    """Draws a GuestScreen; sends keys and pastes through `send` (bytes)."""

    DEFAULT_CSS = """
    Terminal { background: ansi_default; color: ansi_default; width: 1fr; height: 1fr; }
    """

    class Resized(Message):
        def __init__(self, rows: int, cols: int) -> None:
            super().__init__()
            self.rows, self.cols = rows, cols

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, Terminal.Resized)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._out: asyncio.Queue[bytes] = asyncio.Queue()
        self.screen_model = GuestScreen(80, 24, self._out.put_nowait)
        self.stream = pyte.ByteStream(self.screen_model)
        self._styles: dict[tuple, Style] = {}
        self.live = True   # False once the guest process has ended: keys are no longer sent

    # --- output from the guest -------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.stream.feed(data)
        self.refresh()

    def send(self, data: bytes) -> None:
        """Queue bytes for the guest (the screen's writer task drains `outgoing`)."""
        if data and self.live:
            self._out.put_nowait(data)

    async def outgoing(self) -> bytes:
        return await self._out.get()

    def display_lines(self) -> list[str]:
        """The screen's text, one string a row (what a user sees, for tests)."""
        return list(self.screen_model.display)

    # --- size ------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        cols, rows = max(2, self.size.width), max(2, self.size.height)
        if (rows, cols) != (self.screen_model.lines, self.screen_model.columns):
            self.screen_model.resize(rows, cols)
        self.post_message(self.Resized(rows, cols))

    # --- input -----------------------------------------------------------------------

    async def on_key(self, event: events.Key) -> None:
        if event.key == LEAVE_KEY or not self.live:
            return  # the screen's bindings handle it (once the guest process ended, Esc leaves too)
        event.stop()
        event.prevent_default()
        self.send(encode_key(event.key, event.character, app_cursor=self.screen_model.app_cursor))

    def on_paste(self, event: events.Paste) -> None:
        event.stop()
        self.send(event.text.replace("\r\n", "\r").replace("\n", "\r").encode())

    # --- drawing ---------------------------------------------------------------------

    def _style(self, char) -> Style:
        key = (char.fg, char.bg, char.bold, char.italics, char.underscore, char.strikethrough, char.reverse)
        style = self._styles.get(key)
        if style is None:
            style = Style(color=_colour(char.fg), bgcolor=_colour(char.bg), bold=char.bold or None,
                          italic=char.italics or None, underline=char.underscore or None,
                          strike=char.strikethrough or None, reverse=char.reverse or None)
            self._styles[key] = style
        return style

    def render_line(self, y: int) -> Strip:
        screen = self.screen_model
        width = self.size.width
        if y >= screen.lines:
            return Strip.blank(width)
        row = screen.buffer[y]
        cursor = screen.cursor
        show_cursor = self.has_focus and self.live and not cursor.hidden and cursor.y == y
        segments: list[Segment] = []
        text: list[str] = []
        current: Style | None = None
        for x in range(min(screen.columns, width)):
            char = row[x]
            if char.data == "":  # the right half of a wide character
                continue
            style = self._style(char)
            if show_cursor and x == cursor.x:
                style = style + Style(reverse=not char.reverse)
            if style != current and text:
                segments.append(Segment("".join(text), current))
                text = []
            current = style
            text.append(char.data)
        if text:
            segments.append(Segment("".join(text), current))
        base = self.rich_style
        return Strip(segments).crop_extend(0, width, base).apply_style(base)


def _colour(name: str) -> str | None:
    if name == "default":
        return None
    if name in _COLOURS:
        return _COLOURS[name]
    if len(name) == 6:
        try:
            int(name, 16)
            return f"#{name}"
        except ValueError:
            return None
    return None
