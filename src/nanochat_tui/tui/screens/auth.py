"""Auth pane: enter the W&B API key (masked), check its format, store it (keyring or a 0600 file
with a visible warning). The key is never shown again — not even its last characters."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Input, Static

from nanochat_tui import secrets
from nanochat_tui.tui.messages import AuthChanged

log = logging.getLogger("nanochat_tui.tui.auth")
HELP = (
    "Get a key at https://wandb.ai/authorize. It is stored with the OS keyring (service "
    "'nanochat-tui', user 'wandb') and exported to wandb only inside the training process. "
    "The field has the focus: type or paste · enter stores · esc leaves it (then 1..9 switch "
    "panes) · ctrl+t checks online · ctrl+x deletes"
)


class AuthPane(Widget):
    """W&B key entry, status, fallback warning, online check."""

    DEFAULT_CSS = """
    AuthPane { padding: 0 1; }
    AuthPane > Vertical { height: auto; max-width: 100; }
    AuthPane .auth-title { text-style: bold; color: $accent; }
    AuthPane #auth-status { margin-top: 1; }
    AuthPane #auth-warning { color: $warning; height: auto; }
    AuthPane #auth-warning.hidden { display: none; }
    AuthPane #wandb-key { margin-top: 1; width: 60; max-width: 100%; }
    AuthPane #auth-check { height: auto; }
    AuthPane #auth-help { color: $text-muted; margin-top: 1; height: auto; }
    """
    # priority: they work from inside the key field (whose own ctrl+x would cut the secret)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+t", "verify", "Check the stored W&B key online", id="auth.verify", priority=True
        ),
        Binding("ctrl+x", "delete", "Delete the stored W&B key", id="auth.delete", priority=True),
    ]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Weights & Biases API key", classes="auth-title")
            yield Static("", id="auth-status")
            yield Static("", id="auth-warning", classes="hidden")
            yield Input(
                placeholder="paste the key; enter stores it (input is masked)",
                password=True,
                id="wandb-key",
                compact=True,
            )
            yield Static("", id="auth-check")
            yield Static(Text(HELP), id="auth-help")

    def on_mount(self) -> None:
        self.refresh_status()

    can_focus = True

    def initial_focus(self) -> Widget | None:
        """The key field: a key typed on entry lands in it (masked) instead of its digits
        switching panes; esc leaves it (the pane itself then has the focus)."""
        return self.query_one("#wandb-key", Input)

    def refresh_status(self) -> None:
        status = secrets.secret_status("wandb")
        style = "green" if status.stored else "yellow"
        self.query_one("#auth-status", Static).update(
            Text.assemble(("W&B key: ", "dim"), (status.describe(), style))
        )
        warning = self.query_one("#auth-warning", Static)
        warning.update(Text("⚠ " + status.warning) if status.warning else "")
        warning.set_class(not status.warning, "hidden")

    @on(Input.Changed, "#wandb-key")
    def key_typed(self, event: Input.Changed) -> None:
        event.stop()
        check = self.query_one("#auth-check", Static)
        if not event.value:  # cleared by the user (keep the result of a store or a check)
            return
        problem = secrets.check_wandb_key(event.value)
        check.update(
            Text("✗ " + problem, "red") if problem else Text("format OK — enter stores it", "green")
        )

    @on(Input.Submitted, "#wandb-key")
    def key_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        problem = secrets.check_wandb_key(value)
        check = self.query_one("#auth-check", Static)
        if problem:
            check.update(Text("✗ " + problem + " Nothing stored.", "red"))
            return
        try:
            result = secrets.set_secret("wandb", value)
        except OSError as err:
            log.error("storing the W&B key failed: %s", type(err).__name__)
            self.app.notify(f"could not store the key: {err.strerror}", severity="error")
            return
        event.input.value = ""
        log.info("W&B key stored (backend=%s)", result.backend)
        self.refresh_status()
        where = "keyring" if result.backend == "keyring" else "0600 file"
        check.update(
            Text.assemble(
                (f"stored in {where} ✓ (value hidden)", "green"),
                (f"\nnot checked online — ctrl+t checks it with {secrets.WANDB_HOST}", "dim"),
            )
        )
        if result.warning:
            self.app.notify(result.warning, severity="warning", timeout=10)
        else:
            self.app.notify(f"W&B key stored in {where}", timeout=4)
        self.post_message(AuthChanged("wandb"))

    def action_verify(self) -> None:
        if not secrets.secret_status("wandb").stored:
            self.app.notify("no W&B key stored yet", severity="warning")
            return
        self.query_one("#auth-check", Static).update(
            Text(f"checking the key with https://{secrets.WANDB_HOST} …", "dim")
        )
        self.verify_online()

    @work(thread=True, exclusive=True, group="auth-verify")
    def verify_online(self) -> None:
        key = secrets.get_secret("wandb")
        result = secrets.verify_wandb_online(key) if key else "no key stored"
        log.info("W&B online check: %s", result)
        self.app.call_from_thread(self._show_check, result)

    def _show_check(self, result: str) -> None:
        style = "green" if "✓" in result else "yellow"
        self.query_one("#auth-check", Static).update(Text(result, style))

    def action_delete(self) -> None:
        if not secrets.secret_status("wandb").stored:
            self.app.notify("no W&B key stored", timeout=3)
            return
        from nanochat_tui.tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                secrets.delete_secret("wandb")
                log.info("W&B key deleted")
                self.refresh_status()
                self.query_one("#auth-check", Static).update("key deleted")
                self.post_message(AuthChanged("wandb"))

        self.app.push_screen(ConfirmScreen("Delete the stored W&B API key?"), answered)

    def palette_commands(self) -> list[tuple[str, str, Any]]:
        return [
            (
                "Enter W&B API key",
                "focus the masked key field",
                lambda: self.query_one("#wandb-key").focus(),
            ),
            (
                "Check W&B key online",
                f"contacts {secrets.WANDB_HOST} (offline: format only)",
                self.action_verify,
            ),
            ("Delete W&B key", "remove it from keyring and file (asks first)", self.action_delete),
        ]
