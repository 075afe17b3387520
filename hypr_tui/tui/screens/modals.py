"""Dialogs: confirm, prompt, choose a signal, read a text, help, the action menu, too small."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no; `y` confirms, `n` and Esc cancel. Focus starts on Cancel."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
        Binding("left,h,right,l", "app.focus_next", show=False),
    ]

    def __init__(self, question: str, *, confirm: str = "Yes", danger: bool = True) -> None:
        super().__init__()
        self.question = question
        self.confirm_label = confirm
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", id="yes", variant="error" if self.danger else "primary")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptScreen(ModalScreen[str | None]):
    """One line of input; Enter accepts, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "", *, placeholder: str = "", hint: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-text")
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static(self.hint or "Enter to accept, Esc to cancel", classes="dialog-hint")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


SIGNALS = ["SIGKILL", "SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGSTOP", "SIGCONT"]


class SignalScreen(ModalScreen[str | None]):
    """Choose the signal to send; choosing it is the confirmation."""

    BINDINGS = [Binding("escape,n", "cancel", "Cancel"), Binding("j", "cursor_down", show=False),
                Binding("k", "cursor_up", show=False)]

    def __init__(self, question: str, default: str = "SIGKILL") -> None:
        super().__init__()
        self.question = question
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-text")
            yield OptionList(*[Option(s, id=s) for s in SIGNALS], id="signals")
            yield Static("Enter sends the signal, Esc cancels", classes="dialog-hint")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = SIGNALS.index(self.default) if self.default in SIGNALS else 0
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cursor_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextScreen(ModalScreen[None]):
    """A read-only text (inspect output, system info); Esc or q closes."""

    BINDINGS = [Binding("escape,q", "close", "Close"), Binding("j,down", "scroll(1)", show=False),
                Binding("k,up", "scroll(-1)", show=False), Binding("g,home", "top", show=False),
                Binding("G,end", "bottom", show=False)]

    def __init__(self, title: str, body, *, wide: bool = True) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.wide = wide

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide" if self.wide else "dialog"):
            yield Static(self.title_text, classes="dialog-title")
            with VerticalScroll(id="text-scroll"):
                yield Static(self.body, id="text-body")
            yield Static("Esc closes", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#text-scroll").focus()

    def action_scroll(self, lines: int) -> None:
        scroll = self.query_one("#text-scroll", VerticalScroll)
        scroll.scroll_relative(y=lines, animate=False)

    def action_top(self) -> None:
        self.query_one("#text-scroll", VerticalScroll).scroll_home(animate=False)

    def action_bottom(self) -> None:
        self.query_one("#text-scroll", VerticalScroll).scroll_end(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)


class MenuScreen(ModalScreen[str | None]):
    """A list of choices (the actions on a selection); Enter runs one, Esc closes."""

    BINDINGS = [Binding("escape,q", "cancel", "Close"), Binding("j", "down", show=False),
                Binding("k", "up", show=False)]

    def __init__(self, title: str, choices: list[tuple[str, str]], keys: dict[str, str] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices
        self.keys = keys or {}   # a key that picks a choice directly (the registry's key)

    def on_key(self, event) -> None:
        choice = self.keys.get(event.character or "")
        if choice is not None:
            event.stop()
            self.dismiss(choice)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield OptionList(*[Option(label, id=value) for value, label in self.choices], id="menu")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """The bindings of the screen it was opened from (`?`)."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, title: str, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(style="dim")
        for key, description, detail in self.rows:
            table.add_row(escape(key), escape(description), escape(detail))
        with Vertical(classes="dialog wide"):
            yield Static(self.title_text, classes="dialog-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(table)
            yield Static("ctrl+p: every hypr action   Esc closes", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)


class TooSmallScreen(Screen[None]):
    """Shown instead of a broken layout while the terminal is smaller than the minimum."""

    BINDINGS = [Binding("q,ctrl+c", "app.quit", "Quit")]

    def __init__(self, minimum: tuple[int, int]) -> None:
        super().__init__()
        self.minimum = minimum

    def compose(self) -> ComposeResult:
        yield Static(id="too-small-text")

    def show_size(self, width: int, height: int) -> None:
        w, h = self.minimum
        self.query_one("#too-small-text", Static).update(
            f"The terminal is {width}x{height}.\n\nhypr-tui needs at least {w}x{h}:\n"
            f"enlarge the window, or press q to quit.")
