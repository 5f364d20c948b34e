"""Eval / Chat pane (key 3): talk to the loaded checkpoint, or let it continue a prompt.

Tool calls the model makes (``<|python_start|>…<|python_end|>``) run while it replies: the built-in
calculator at once, a user tool of the run's project interface only after a confirm dialog showing
the command and its JSON arguments. The call and its output appear in the reply, styled apart.

Generation runs in a ``@work(thread=True)`` worker; each streamed piece reaches the UI through
``call_from_thread``. JAX is imported only inside that worker (``ChatModel.load``), never at module
import. Every message is appended to ``run_dir/transcripts/<session>.jsonl``; past transcripts are
browsable (ctrl+l) and eval prompt presets (ctrl+o) are editable and persist in the config dir.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Input, Label, Static
from textual.worker import get_current_worker

from nanochat_tui.errors import UserError
from nanochat_tui.eval_presets import Preset, load_presets
from nanochat_tui.transcripts import TranscriptWriter, read_transcript
from nanochat_tui.tui.messages import CheckpointLoaded, DeviceInfo
from nanochat_tui.tui.screens.chat_dialogs import PresetsScreen, TranscriptPicker

log = logging.getLogger("nanochat_tui.tui.chat")

ROLE_STYLE = {
    "user": ("you", "bold cyan"),
    "prompt": ("prompt", "bold cyan"),
    "assistant": ("model", "bold green"),
    "completion": ("model", "bold green"),
    "error": ("error", "bold red"),
}
# how a tool call and its output look inside a reply (the text around them is plain)
PART_STYLE = {"python": ("⚙ ", "bold yellow"), "output": ("→ ", "magenta")}
NO_CHECKPOINT = (
    "No checkpoint loaded.\n\n"
    "Press esc (to leave the prompt box), then 2 to open Checkpoints; highlight one and press "
    "Enter to load it, then come back with 3.\n"
    "No checkpoints yet? Train one first: esc, 4 (Runs), then n (or `nanochat-tui run tiny`)."
)
# sampling setting -> the id of its input on the settings row
SAMPLING_FIELDS = {"temperature": "temperature", "top_k": "top-k", "max_tokens": "max-tokens"}


def format_stats(stats: dict[str, Any]) -> str:
    """'ttft 0.12 s · 41.0 tok/s · 12 prompt + 64 completion tokens'."""
    parts = []
    if stats.get("ttft_s") is not None:
        parts.append(f"ttft {stats['ttft_s']:.2f} s")
    if stats.get("tokens_per_s") is not None:
        parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
    if "prompt_tokens" in stats or "completion_tokens" in stats:
        parts.append(
            f"{stats.get('prompt_tokens', '?')} prompt + {stats.get('completion_tokens', '?')} completion tokens"
        )
    return " · ".join(parts)


class MessageView(Static):
    """One message; the reply in flight grows through ``append``."""

    DEFAULT_CSS = """
    MessageView { height: auto; padding: 0 1; margin-bottom: 1; }
    MessageView.-prompt, MessageView.-user { background: $boost; }
    """

    def __init__(
        self,
        role: str,
        content: str = "",
        stats: dict[str, Any] | None = None,
        parts: list[list[str]] | None = None,
    ) -> None:
        super().__init__(classes=f"-{role}")
        self.role = role
        self.body = content
        self.parts: list[list[str]] = [list(p) for p in parts or []]  # [kind, text] of a reply
        self.stats = stats
        self.pending = False
        self.phase = ""  # shown while the reply has no text yet: "loading checkpoint…"
        self.phases: list[str] = []

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.phases.append(phase)
        self._render_text()

    def on_mount(self) -> None:
        self._render_text()

    def append(self, piece: str, kind: str = "text") -> None:
        """Add streamed text; ``kind`` "python" (a tool call) or "output" (its result) is shown
        apart from the reply's text."""
        self.body += piece
        if self.parts and self.parts[-1][0] == kind:
            self.parts[-1][1] += piece
        else:
            self.parts.append([kind, piece])
        self._render_text()

    @property
    def used_tools(self) -> bool:
        return any(kind != "text" for kind, _ in self.parts)

    def finish(self, stats: dict[str, Any] | None) -> None:
        self.pending = False
        self.stats = stats
        self._render_text()

    def _render_text(self) -> None:
        label, style = ROLE_STYLE.get(self.role, (self.role, "bold"))
        text = Text()
        text.append(f"{label} ", style=style)
        if self.used_tools:
            for kind, piece in self.parts:
                if kind in PART_STYLE:
                    mark, part_style = PART_STYLE[kind]
                    text.append(
                        f"\n{mark}{kind} " if kind == "python" else f"\n{mark}", style=part_style
                    )
                    text.append(piece, style=part_style)
                    text.append("\n")
                else:
                    text.append(piece)
        else:
            text.append(self.body)
        if self.pending and self.phase and not self.body:
            text.append(self.phase, style="dim italic")
        if self.pending:
            text.append("▌", style="blink")
        if self.stats:
            text.append(f"\n{format_stats(self.stats)}", style="dim italic")
        self.update(text)


class ChatPane(Widget):
    """Prompt continuation and multi-turn chat on ``app.state.checkpoint``."""

    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane #chat-header { height: 1; padding: 0 1; background: $boost; }
    ChatPane #chat-settings { height: 1; padding: 0 1; }
    ChatPane #chat-settings Label { margin: 0 1 0 0; }
    ChatPane #chat-settings Input { width: 9; height: 1; border: none; padding: 0; margin-right: 2; }
    ChatPane #chat-settings Input:focus { background: $accent 30%; }
    ChatPane #chat-settings Input.-invalid { color: $error; }
    ChatPane #chat-log { height: 1fr; }
    ChatPane #chat-log:focus { background: $boost; }
    ChatPane #chat-empty { padding: 1 2; color: $text-muted; }
    ChatPane #chat-input { dock: bottom; }
    """

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("ctrl+t", "toggle_mode", "Chat/complete", id="chat.mode"),
        Binding("ctrl+n", "new_chat", "New chat", id="chat.new"),
        Binding("ctrl+o", "presets", "Presets", id="chat.presets"),
        Binding("ctrl+l", "transcripts", "Transcripts", id="chat.transcripts"),
        Binding("escape", "escape", "Stop/back", id="chat.escape"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mode = "chat"  # or "complete"
        self.messages: list[dict[str, Any]] = []  # the live conversation (transcript records)
        self.viewing: Path | None = None  # a transcript shown read-only instead of the live log
        self.generating = False
        self._model: Any = None
        self._model_key: str | None = None
        self._reply: MessageView | None = None  # the reply being written (None: none or dropped)
        self._writer: TranscriptWriter | None = None
        self._seed = 0  # a fresh sampling seed per reply

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="chat-header")
            with Horizontal(id="chat-settings"):
                yield Label("temperature")
                yield Input("0.8", id="temperature", compact=True)
                yield Label("top-k")
                yield Input("50", id="top-k", compact=True)
                yield Label("max tokens")
                yield Input("128", id="max-tokens", compact=True)
            log_view = VerticalScroll(id="chat-log")
            # a tab stop only while a transcript is shown (the input is disabled then): otherwise
            # Tab cycles the four fields and never lands where typed keys would act as shortcuts
            log_view.can_focus = False
            yield log_view
            yield Input(id="chat-input")

    def on_mount(self) -> None:
        self._refresh_all()

    @property
    def checkpoint(self) -> Any:
        return self.app.state.checkpoint  # type: ignore[attr-defined]

    def _refresh_all(self) -> None:
        self._update_header()
        self._render_log()
        self.query_one("#chat-log", VerticalScroll).can_focus = self.viewing is not None
        box = self.query_one("#chat-input", Input)
        # enabled without a checkpoint too: what is typed lands here (and stays) instead of
        # acting as shortcuts; Enter then says how to load one
        box.disabled = self.viewing is not None
        if self.checkpoint is None:
            box.placeholder = "No checkpoint: Enter sends once one is loaded (esc, then 2)"
        elif self.mode == "chat":
            box.placeholder = (
                "Enter sends · ^t chat/complete · ^o presets · ^l transcripts · ^n new"
            )
        else:
            box.placeholder = (
                "Text to continue · Enter · ^t chat/complete · ^o presets · ^l transcripts"
            )

    def initial_focus(self) -> Widget | None:
        """The shell focuses this when the pane is shown: the prompt box (unless a transcript
        is shown read-only)."""
        box = self.query_one("#chat-input", Input)
        return None if box.disabled else box

    def quit_concern(self) -> str | None:
        """What quitting now would lose (the app asks first)."""
        return "Chat is writing a reply (it would be cut off)" if self.generating else None

    def _update_header(self) -> None:
        header = self.query_one("#chat-header", Static)
        ckpt = self.checkpoint
        if self.viewing is not None:
            header.update(
                f"Transcript {self.viewing.stem} — read-only · esc returns to the live chat"
            )
            return
        mode = "multi-turn chat" if self.mode == "chat" else "prompt continuation"
        where = f"{ckpt.run_dir.name} step {ckpt.step}" if ckpt is not None else "no checkpoint"
        busy = " · generating… (esc stops)" if self.generating else ""
        header.update(Text(f"{mode} [ctrl+t] · {where}{busy}"))

    def _render_log(self, records: list[dict[str, Any]] | None = None) -> None:
        scroll = self.query_one("#chat-log", VerticalScroll)
        scroll.remove_children()
        if records is None and self.checkpoint is None and self.viewing is None:
            scroll.mount(Static(NO_CHECKPOINT, id="chat-empty", markup=False))
            return
        for record in records if records is not None else self.messages:
            scroll.mount(
                MessageView(
                    record["role"],
                    str(record.get("content", "")),
                    record.get("stats"),
                    record.get("parts"),
                )
            )
        scroll.scroll_end(animate=False)

    # ------------------------------------------------------------ settings

    def sampling(self) -> dict[str, Any]:
        """Temperature / top-k / max tokens from the inputs; raises UserError naming every bad
        field with its reason (each bad field is also marked red)."""
        from nanochat_tui.sampling_params import check_field

        values: dict[str, Any] = {}
        errors: list[str] = []
        for name, widget_id in SAMPLING_FIELDS.items():
            box = self.query_one(f"#{widget_id}", Input)
            value, error = check_field(name, box.value)
            box.set_class(error is not None, "-invalid")
            if error:
                errors.append(error)
            values[name] = value
        if errors:
            raise UserError("; ".join(errors), "fix the red field(s); your message is kept")
        values["top_k"] = values["top_k"] or None
        return values

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in SAMPLING_FIELDS.values():
            with contextlib.suppress(UserError):
                self.sampling()

    # ------------------------------------------------------------ sending

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "chat-input":
            if event.input.id in SAMPLING_FIELDS.values():
                self.query_one("#chat-input", Input).focus()
            return
        event.stop()
        text = event.value
        if text.strip() and self.send(text):
            event.input.value = ""  # only once sent: a refused message stays in the box

    def send(self, text: str, mode: str | None = None) -> bool:
        """Send a prompt (chat: a user turn; complete: text to continue) and stream the reply.

        Returns False (and says why) when it was not sent."""
        if self.checkpoint is None:
            self.notify(
                "Load a checkpoint first: esc, 2, then Enter on a row (your text is kept)",
                severity="warning",
            )
            return False
        if self.generating:
            self.notify("Still generating — esc stops it", severity="warning")
            return False
        if self.viewing is not None:
            self.viewing = None
        try:
            params = self.sampling()
        except UserError as err:
            self.notify(str(err), severity="error", timeout=8)
            return False
        if mode is not None and mode != self.mode:
            self.mode = mode
            self.messages = []
            self._writer = None
        role, reply_role = (
            ("user", "assistant") if self.mode == "chat" else ("prompt", "completion")
        )
        if self.mode == "complete":
            self.messages = []  # each continuation stands alone
        self._record(role, text)
        self._refresh_all()
        self.query_one("#chat-input", Input).focus()
        reply = MessageView(reply_role)
        reply.pending = True
        scroll = self.query_one("#chat-log", VerticalScroll)
        scroll.mount(reply)
        scroll.scroll_end(animate=False)
        self.generating = True
        self._update_header()
        history = [
            {"role": m["role"], "content": _content(m)}
            for m in self.messages
            if m["role"] in ("user", "assistant")
        ]
        self._seed += 1
        params["seed"] = self._seed
        self._reply = reply
        self._generate(self.checkpoint, self.mode, text, history, params, reply)
        return True

    def _record(
        self,
        role: str,
        content: str,
        stats: dict[str, Any] | None = None,
        parts: list[list[str]] | None = None,
    ) -> None:
        ckpt = self.checkpoint
        if self._writer is None:
            self._writer = TranscriptWriter(ckpt.run_dir, checkpoint=str(ckpt.path), step=ckpt.step)
        try:
            record = self._writer.append(role, content, stats, mode=self.mode, parts=parts)
        except UserError as err:
            self.notify(str(err), severity="error")
            record = {"role": role, "content": content, "stats": stats, "mode": self.mode}
            if parts:
                record["parts"] = parts
        self.messages.append(record)

    @work(thread=True, exclusive=True, group="chat-generate")
    def _generate(
        self,
        ckpt: Any,
        mode: str,
        text: str,
        history: list[dict[str, str]],
        params: dict[str, Any],
        reply: MessageView,
    ) -> None:
        """Worker: load ``ckpt`` (the checkpoint when the message was sent) and stream a reply."""
        worker = get_current_worker()
        try:
            if self._model is None or self._model_key != str(ckpt.path):
                self.app.call_from_thread(
                    reply.set_phase,
                    f"loading checkpoint step {ckpt.step} "
                    "(first message: start-up, weights and compile)… ",
                )
            model = self._load_model(ckpt)
            self.app.call_from_thread(reply.set_phase, "generating… ")
            kwargs = {
                "max_tokens": params["max_tokens"],
                "temperature": params["temperature"],
                "top_k": params["top_k"],
                "seed": params.get("seed", 0),
            }
            pieces = (
                model.chat_turn(history, tools=self._tool_runner(model, ckpt), **kwargs)
                if mode == "chat"
                else (("text", p) for p in model.complete(text, **kwargs))
            )
            for kind, piece in pieces:
                if worker.is_cancelled:
                    break
                self.app.call_from_thread(reply.append, piece, kind)
            stats = dict(getattr(model, "last_stats", None) or {})
            if worker.is_cancelled:
                stats["stopped"] = True
            self.app.call_from_thread(self._finish, reply, stats, None)
        except UserError as err:
            self.app.call_from_thread(self._finish, reply, None, str(err))
        except Exception as err:  # keep the pane alive; the debug log has the traceback
            log.exception("generation failed")
            self.app.call_from_thread(self._finish, reply, None, f"{type(err).__name__}: {err}")

    def _load_model(self, ckpt: Any) -> Any:
        """ChatModel for checkpoint ``ckpt``, loaded once (this is where JAX gets imported)."""
        key = str(ckpt.path)
        if self._model is None or self._model_key != key:
            from nanochat_tui.jax_engine.flops import device_brief
            from nanochat_tui.jax_engine.inference import ChatModel
            from nanochat_tui.orchestrator.plugin_hooks import model_mlp

            self._model = ChatModel.load(ckpt.path, mlp_for=model_mlp)
            self._model_key = key
            self.post_message(DeviceInfo(device_brief()))  # the status bar's device field
        return self._model

    def _tool_runner(self, model: Any, ckpt: Any) -> Any:
        """The calculator plus the user tools of the run's project interface (each asked for in
        a dialog first). Runs in the worker thread."""
        from nanochat_tui.align.tool_exec import ToolRunner, interface_for_run, load_interface

        path = interface_for_run(model.meta.get("config") or {}, ckpt.run_dir)
        return ToolRunner(load_interface(path) if path else {}, self._confirm_tool)

    def _confirm_tool(self, call: Any) -> bool:
        """Ask in a dialog whether a user tool may run (called from the worker thread; it waits
        for the answer; esc on the reply refuses)."""
        from nanochat_tui.tui.screens.confirm import ConfirmScreen

        done, answer = threading.Event(), [False]

        def answered(ok: bool | None) -> None:
            answer[0] = bool(ok)
            done.set()

        question = f"The model calls a tool.\n\n{call.describe()}\n\nRun it?"
        self.app.call_from_thread(
            self.app.push_screen, ConfirmScreen(question, yes="Run", no="Refuse"), answered
        )
        worker = get_current_worker()
        while not done.wait(0.1):
            if worker.is_cancelled:
                return False
        return answer[0]

    def _finish(self, reply: MessageView, stats: dict[str, Any] | None, error: str | None) -> None:
        if reply is not self._reply:
            return  # dropped: the checkpoint changed (or was unloaded) while it was written
        self._reply = None
        self.generating = False
        if error is not None:
            reply.remove()
            self.messages.append({"role": "error", "content": error})
            self.query_one("#chat-log", VerticalScroll).mount(MessageView("error", error))
        else:
            reply.finish(stats)
            self._record(reply.role, reply.body, stats, reply.parts if reply.used_tools else None)
        self._update_header()
        self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    # ------------------------------------------------------------ shared state

    def on_checkpoint_loaded(self, message: CheckpointLoaded) -> None:
        if not self.is_mounted:
            return
        if self.generating:  # the reply belongs to the old checkpoint's conversation: drop it
            self._cancel_reply()
            self._reply = None
            self.generating = False
        self.messages = []
        self._writer = None
        self.viewing = None
        self._refresh_all()

    # ------------------------------------------------------------ actions

    def action_toggle_mode(self) -> None:
        self.mode = "complete" if self.mode == "chat" else "chat"
        self.messages = []
        self._writer = None
        self.viewing = None
        self._refresh_all()
        self.notify(
            f"Mode: {'multi-turn chat' if self.mode == 'chat' else 'prompt continuation'}",
            timeout=2,
        )

    def action_new_chat(self) -> None:
        def clear(ok: bool | None) -> None:
            if ok:
                self.messages = []
                self._writer = None
                self.viewing = None
                self._refresh_all()

        if self.generating:
            self.notify("Stop the reply first (esc)", severity="warning")
        elif self.messages:
            from nanochat_tui.tui.screens.confirm import ConfirmScreen

            self.app.push_screen(
                ConfirmScreen("Clear this conversation? (its transcript stays saved)"), clear
            )
        else:
            clear(True)

    def _cancel_reply(self) -> None:
        for worker in self.workers:
            if worker.group == "chat-generate":
                worker.cancel()

    def action_escape(self) -> None:
        if self.generating:
            self._cancel_reply()
        elif self.viewing is not None:
            self.viewing = None
            self._refresh_all()
            self.query_one("#chat-input", Input).focus()
        else:  # nothing to stop: leave the field like everywhere else, so keys switch panes
            self.app.set_focus(None)

    def action_transcripts(self) -> None:
        ckpt = self.checkpoint
        if ckpt is None:
            self.notify(
                "Load a checkpoint to browse its run's transcripts (key 2)", severity="warning"
            )
            return
        self.app.push_screen(TranscriptPicker(ckpt.run_dir), self.show_transcript)

    def show_transcript(self, path: Path | None) -> None:
        """Show a saved transcript read-only in the log (esc returns to the live chat)."""
        if path is None:
            return
        try:
            records = read_transcript(path)
        except UserError as err:
            self.notify(str(err), severity="error")
            return
        self.viewing = path
        self._update_header()
        self.query_one("#chat-input", Input).disabled = True
        self._render_log(records)
        log_view = self.query_one("#chat-log", VerticalScroll)
        log_view.can_focus = True
        log_view.focus()

    def action_presets(self) -> None:
        try:
            presets = load_presets()
        except UserError as err:
            self.notify(str(err), severity="error", timeout=8)
            return
        self.app.push_screen(PresetsScreen(presets), self._use_preset)

    def _use_preset(self, preset: Preset | None) -> None:
        if preset is None:
            return
        if preset.mode == self.mode or not self.messages:
            self.send(preset.prompt, preset.mode)
            return
        from nanochat_tui.tui.screens.confirm import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if yes:
                self.send(preset.prompt, preset.mode)

        self.app.push_screen(
            ConfirmScreen(
                f"Preset '{preset.name}' is for {preset.mode} mode; switching ends this "
                f"conversation ({len(self.messages)} messages, saved as a transcript). Switch?"
            ),
            answer,
        )

    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        return [
            ("Chat: toggle chat / prompt continuation", "ctrl+t", self.action_toggle_mode),
            ("Chat: new conversation", "ctrl+n", self.action_new_chat),
            ("Chat: eval presets", "pick, edit and save prompts (ctrl+o)", self.action_presets),
            (
                "Chat: browse transcripts",
                "saved sessions of this run (ctrl+l)",
                self.action_transcripts,
            ),
        ]


def _content(record: dict[str, Any]) -> Any:
    """A transcript record as chat content: nanochat parts when the reply used a tool."""
    parts = record.get("parts")
    if not parts:
        return record["content"]
    kinds = {"text": "text", "python": "python", "output": "python_output"}
    return [{"type": kinds[kind], "text": text} for kind, text in parts]
