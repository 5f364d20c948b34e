"""Load a checkpoint and stream text from it: ``ChatModel.load(path).chat(messages)``.

``path`` is a run directory (its latest checkpoint) or a checkpoint step directory. The run's own
tokenizer.json must match the checkpoint's ``tokenizer_hash``, else IncompatibleCheckpoint.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.align.tool_exec import ToolRunner
from nanochat_tui.errors import IncompatibleCheckpoint, UserError


class ChatModel:
    """A loaded checkpoint: ``meta``, ``tokenizer``, ``config``, ``model``; streams completions."""

    def __init__(self, model, tokenizer, config, meta: dict[str, Any], path: Path) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.meta = meta
        self.path = path
        self.last_stats: dict[str, Any] = {}

    @classmethod
    def load(cls, path: Path | str, mlp_for: Callable[[Any], Any] | None = None) -> ChatModel:
        """Load ``path``. ``mlp_for(config)`` builds the MLP a plugin put in the model (the MoE
        plugin's experts) for a checkpoint whose meta names ``plugin_shape``; the engine never
        imports plugins, so the caller passes ``orchestrator.plugin_hooks.model_mlp``. Without it,
        such a checkpoint is refused with the fields that shape it."""
        from flax import nnx

        from nanochat_tui.config.loader import ConfigError, validate
        from nanochat_tui.jax_engine.checkpoint import read_meta, resolve_step_dir, restore_into
        from nanochat_tui.jax_engine.flops import compute_dtype
        from nanochat_tui.jax_engine.model import GPT
        from nanochat_tui.jax_engine.tokenizer import Tokenizer

        step_dir = resolve_step_dir(path)
        meta = read_meta(step_dir)
        try:
            config = validate(meta.get("config") or {}, f"{step_dir} metadata", sections=False)
        except ConfigError as err:
            raise IncompatibleCheckpoint(
                str(err), "this checkpoint was written by an incompatible nanochat-tui version"
            ) from None
        mlp = None
        if meta.get("plugin_shape"):
            if mlp_for is None:
                fields = ", ".join(f"{k}={v}" for k, v in sorted(meta["plugin_shape"].items()))
                raise IncompatibleCheckpoint(
                    f"{step_dir} was trained with a plugin that changes the model ({fields})",
                    "chat and eval load it (`nanochat-tui chat`, the Chat and Evals panes); "
                    "serve and export take only models without plugin layers",
                )
            mlp = mlp_for(config)
        tok_path = step_dir.parent.parent / rundir.TOKENIZER
        if not tok_path.is_file():
            raise IncompatibleCheckpoint(
                f"{tok_path} is missing",
                "a checkpoint needs its run's tokenizer.json next to checkpoints/",
            )
        tokenizer = Tokenizer.load(tok_path)
        want = meta.get("tokenizer_hash")
        if want and want != tokenizer.hash:
            raise IncompatibleCheckpoint(
                f"checkpoint {step_dir} expects tokenizer {want} but {tok_path} is {tokenizer.hash}",
                "restore the run's original tokenizer.json (it was replaced or edited)",
            )
        model = GPT(config.model, rngs=nnx.Rngs(0), dtype=compute_dtype(config), mlp=mlp)
        restore_into(step_dir, model)
        return cls(model, tokenizer, config, meta, step_dir)

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    # ------------------------------------------------------------ streaming

    def _stream(
        self,
        ids: list[int],
        stop_ids: tuple[int, ...],
        *,
        max_tokens: int,
        temperature: float,
        top_k: int | None,
        seed: int,
        tools: ToolRunner | None = None,
        prefix: int = 0,
    ) -> Iterator[tuple[str, str]]:
        """``(kind, piece)`` as the ids decode: kind "text", "python" (a tool call the model
        writes) or "output" (a tool's output, forced into the context); the delimiter tokens
        themselves are not shown. An incomplete UTF-8 character is held back."""
        from nanochat_tui.jax_engine.sample import generate

        seq = self.config.model.sequence_len
        max_tokens = max(1, min(max_tokens, seq - 1))
        ids = ids[-(seq - max_tokens) :]  # keep the most recent context that fits
        self.last_stats = {"prompt_tokens": len(ids), "completion_tokens": 0, "ttft_s": None}
        hook = TokenToolHook(self.tokenizer, tools) if tools is not None else None
        kinds = _segment_kinds(self.tokenizer)
        start = time.perf_counter()
        first: float | None = None
        count = 0
        kind, seg, emitted = "text", [], ""
        generated = generate(
            self.model,
            ids,
            max_new_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k if top_k and top_k > 0 else None,
            seed=seed,
            stop_ids=stop_ids,
            tools=hook,
            assistant_prefix=prefix,
        )
        # the prefill is shown as part of the reply, decoded like generated ids
        for tok in itertools.chain(ids[len(ids) - prefix :] if prefix else (), generated):
            count += 1
            if first is None and count > prefix:
                first = time.perf_counter() - start
            if tok in kinds:
                text = self.tokenizer.decode(seg)
                if len(text) > len(emitted):
                    yield kind, text[len(emitted) :]
                kind, seg, emitted = kinds[tok], [], ""
                continue
            seg.append(tok)
            text = self.tokenizer.decode(seg)
            if text.endswith("\ufffd"):
                continue  # a multi-byte character split across tokens: wait for the rest
            piece, emitted = text[len(emitted) :], text
            if piece:
                yield kind, piece
        text = self.tokenizer.decode(seg)
        if len(text) > len(emitted):
            yield kind, text[len(emitted) :]
        total = time.perf_counter() - start
        decode_time = total - (first or 0.0)
        count -= prefix
        self.last_stats = {
            "prompt_tokens": len(ids),
            "completion_tokens": count,
            "ttft_s": first,
            "tokens_per_s": (count - 1) / decode_time if count > 1 and decode_time > 0 else None,
        }
        if tools is not None and tools.log:
            self.last_stats["tool_calls"] = len(tools.log)

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int | None = 50,
        seed: int = 0,
    ) -> Iterator[str]:
        """Continue ``prompt`` as a document (after <|bos|>); stops at the next <|bos|>."""
        tok = self.tokenizer
        stream = self._stream(
            [tok.bos_id, *tok.encode(prompt)],
            (tok.bos_id,),
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            seed=seed,
        )
        return (piece for _kind, piece in stream)

    def chat(
        self,
        messages: list[dict],
        *,
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int | None = 50,
        seed: int = 0,
    ) -> Iterator[str]:
        """Stream the assistant's reply to ``messages``; stops at <|assistant_end|> (or a new turn)."""
        tok = self.tokenizer
        stream = self._stream(
            tok.render_conversation(messages, for_completion=True),
            self._turn_stops(),
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            seed=seed,
        )
        return (piece for _kind, piece in stream)

    def _turn_stops(self) -> tuple[int, ...]:
        tok = self.tokenizer
        return (tok.special("assistant_end"), tok.bos_id, tok.special("user_start"))

    def chat_turn(
        self,
        messages: list[dict],
        *,
        tools: ToolRunner | None,
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int | None = 50,
        seed: int = 0,
        prefill: str = "",
    ) -> Iterator[tuple[str, str]]:
        """Stream the assistant's turn as ``(kind, piece)`` (see ``_stream``), running its tool
        calls through ``tools`` (None: calls are not executed). ``messages`` may hold earlier
        tool turns as assistant parts (align/chat.py); ``prefill`` is text the assistant turn
        starts with (it may open a call: ``<|python_start|>1+1<|python_end|>``)."""
        from nanochat_tui.align.chat import ConversationError, render_for_completion

        try:
            ids = render_for_completion(self.tokenizer, {"messages": messages})
        except ConversationError as err:
            raise UserError(
                f"this conversation cannot be rendered: {err}", "start a new chat"
            ) from None
        prefix = self.tokenizer.encode(prefill) if prefill else []
        return self._stream(
            [*ids, *prefix],
            self._turn_stops(),
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            seed=seed,
            tools=tools,
            prefix=len(prefix),
        )


def _segment_kinds(tokenizer) -> dict[int, str]:
    """Delimiter id -> the kind of text that follows it."""
    sp = tokenizer.special
    return {
        sp("python_start"): "python",
        sp("python_end"): "text",
        sp("output_start"): "output",
        sp("output_end"): "text",
    }


class TokenToolHook:
    """sample.ToolHook over a tokenizer: decode the call, run it, encode the delimited output."""

    def __init__(self, tokenizer, runner: ToolRunner) -> None:
        self.tokenizer = tokenizer
        self.runner = runner
        self.python_start = tokenizer.special("python_start")
        self.python_end = tokenizer.special("python_end")
        self.output = (tokenizer.special("output_start"), tokenizer.special("output_end"))

    def __call__(self, call_ids: list[int]) -> list[int]:
        outcome = self.runner(self.tokenizer.decode(call_ids))
        return [self.output[0], *self.tokenizer.encode(outcome.output), self.output[1]]
