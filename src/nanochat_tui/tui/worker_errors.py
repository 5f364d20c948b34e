"""Background work that fails says so.

A thread worker started with ``exit_on_error=False`` (a pane's loader, a log tail, a steer call)
must not take the cockpit down when it raises, but Textual then only marks it ``ERROR``: the pane
would stay stale with nothing on screen. :class:`ReportsWorkerErrors` gives the node that owns such
workers (the app, a pane, a modal) a handler that turns that state into one error toast and one
log line, with secrets scrubbed. Name such a worker in words (``name="Reading task-eval results"``):
the toast reads "<name> failed: <Error>: <first line>".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from textual.dom import DOMNode

log = logging.getLogger("nanochat_tui.tui")


def worker_failure(worker: Worker) -> str:
    """One line naming what failed and why, with anything shaped like a secret replaced by ***."""
    from nanochat_tui.crash import known_secret_values, scrub

    err = worker.error
    # a worker named in words ("Reading task-eval results") says so; else its group or method
    if " " in worker.name:
        what = worker.name
    else:
        what = (worker.group if worker.group != "default" else "") or worker.name
    what = what or "background work"
    first = (str(err).strip().splitlines() or [""])[0][:300]
    reason = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return scrub(f"{what} failed: {reason}", known_secret_values())


def report_error(node: DOMNode, message: str, error: BaseException | None = None) -> None:
    """Toast and log an error a user should see (with ``error``'s traceback in the log)."""
    log.error("%s", message, exc_info=error)
    node.notify(message, severity="error", timeout=8)


class ReportsWorkerErrors:
    """Mixin for a DOM node: a worker of its own that ends in ERROR becomes an error toast."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            report_error(self, worker_failure(event.worker), event.worker.error)  # type: ignore[arg-type]
