"""The loaded checkpoint as the start of new runs (``run.init_from``): said, cleared, checked.

A checkpoint loaded on the Checkpoints pane (Enter) is the model Chat and Evals use, and the weights
a run started from the app begins with. It is saved in state.json, so it outlives a restart. The
status bar (``new runs from RUN@STEP``), the Runs pane's header and the new-run dialog say so;
``u`` on the Checkpoints pane or the palette's "Unload checkpoint" clears it. A run whose model
does not fit it (the Checkpoints pane's check) never starts from it: ``choose_config`` asks first,
start from scratch or cancel (a Designer MoE design from a dense checkpoint failed after compiling:
``no weights for ['blocks'][0]['mlp']['router']``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

UNLOAD_TITLE = "Unload checkpoint"


def label(checkpoint: Any) -> str:
    """``RUN@STEP``: how the status bar names a checkpoint."""
    return f"{checkpoint.run_dir.name}@{checkpoint.step}"


def problems(config: Any, checkpoint: Any) -> list[Any]:
    """Why ``checkpoint`` cannot start a run of ``config`` (config.compat.Incompat each); empty when
    it fits."""
    from nanochat_tui.tui.screens.checkpoint_rows import fit_problems

    return fit_problems(config, checkpoint.meta)


def start_line(config: Any, checkpoint: Any) -> str:
    """What a new run of ``config`` starts from, for the new-run dialog."""
    if checkpoint is None:
        if config.run.init_from:
            return f"starting from {config.run.init_from} (run.init_from of the config)"
        return "starting from scratch (random weights)"
    name = f"checkpoint {checkpoint.run_dir.name} step {checkpoint.step}"
    found = problems(config, checkpoint)
    if found:
        first = found[0]
        return (
            f"loaded {name} does not fit this config ({first.field}: {first.reason}); "
            "you will be asked: start from scratch or cancel"
        )
    return f"starting from {name} (loaded; ctrl+p → {UNLOAD_TITLE} starts from scratch)"


def choose_config(app: Any, config: Any, then: Callable[[Any], None], *, what: str) -> None:
    """Call ``then`` with the config a new run (``what``, e.g. "run 'r1'") starts from: ``config``
    with ``run.init_from`` = the loaded checkpoint when it fits; when it does not, ask first and
    call ``then`` with ``config`` as it is (from scratch) on yes, nothing on no."""
    checkpoint = getattr(app.state, "checkpoint", None)
    if checkpoint is None:
        then(config)
        return
    found = problems(config, checkpoint)
    if not found:
        config = config.model_copy(deep=True)
        config.run.init_from = str(checkpoint.path)
        then(config)
        return
    from nanochat_tui.tui.screens.confirm import ConfirmScreen

    def answered(yes: bool | None) -> None:
        if yes:
            then(config)
        else:
            app.notify(f"{what} not started", timeout=4)

    reasons = "\n".join(f"  ✗ {p.field}: {p.reason}" for p in found[:6])
    if len(found) > 6:
        reasons += f"\n  … and {len(found) - 6} more (the Checkpoints pane lists them)"
    question = (
        f"The loaded checkpoint {checkpoint.run_dir.name} step {checkpoint.step} does not fit "
        f"config '{config.name}':\n{reasons}\n\n"
        f"Start {what} from scratch (random weights)? "
        f"(The checkpoint stays loaded for Chat; {UNLOAD_TITLE} in ctrl+p clears it.)"
    )
    app.push_screen(ConfirmScreen(question, yes="From scratch", no="Cancel"), answered)


def unload(app: Any) -> None:
    """Clear the loaded checkpoint: Chat and Evals have none, new runs start from scratch."""
    from nanochat_tui.tui.messages import CheckpointLoaded

    checkpoint = app.state.checkpoint
    if checkpoint is None:
        app.notify("no checkpoint is loaded", timeout=3)
        return
    app.state.checkpoint = None
    app.post_message(CheckpointLoaded(None))
    app.save_state()
    app.notify(
        f"unloaded {label(checkpoint)}: new runs start from scratch; Chat needs a checkpoint "
        "loaded again (2, Enter)",
        timeout=5,
    )
