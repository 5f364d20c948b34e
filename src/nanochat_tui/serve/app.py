"""The OpenAI-compatible HTTP API (Starlette) in front of a ``BatchEngine``.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions`` (both streaming
as server-sent events ending in ``data: [DONE]``, or one JSON body), ``GET /stats`` (the Serve
pane's numbers) and ``GET /health`` (503 when the engine is not serving). Every error is an
OpenAI-shaped JSON body; one that happens mid-stream is sent as a last ``data: {"error": …}`` event.
With an API key set, every route needs ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from nanochat_tui.errors import UserError
from nanochat_tui.serve.engine import BatchEngine, EngineUnavailable, GenRequest, QueueFull
from nanochat_tui.serve.logprobs import TokenText, chat_logprobs, completion_logprobs
from nanochat_tui.serve.metrics import ServeMetrics
from nanochat_tui.serve.protocol import (
    APIError,
    Limits,
    Sampling,
    parse_json,
    parse_messages,
    parse_prompt,
    parse_sampling,
    show,
)
from nanochat_tui.serve.text import TextStream

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


@dataclass
class ServeState:
    """What the routes share: the model's name and tokenizer, the engine, limits, metrics, key."""

    model_id: str
    tokenizer: object
    engine: BatchEngine
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    metrics: ServeMetrics = field(default_factory=ServeMetrics)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def max_len(self) -> int:
        return self.engine.max_len


def create_app(state: ServeState, *, manage_engine: bool = True) -> Starlette:
    """The ASGI app. With ``manage_engine`` the app starts/stops the engine in its lifespan."""

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [_model_card(state)]})

    async def model(request: Request) -> Response:
        _check_model(state, request.path_params["model"], status=404)
        return JSONResponse(_model_card(state))

    async def chat(request: Request) -> Response:
        body = parse_json(await request.body(), state.limits)
        _check_model(state, body.get("model"))
        sampling = parse_sampling(body, state.limits, "chat", state.tokenizer.vocab_size)
        tok = state.tokenizer
        try:
            ids = tok.render_conversation(parse_messages(body, state.limits), for_completion=True)
        except UserError as err:
            raise APIError(400, err.message, param="messages") from None
        stops = frozenset((tok.special("assistant_end"), tok.bos_id, tok.special("user_start")))
        return await _respond(state, request, "chat", ids, stops, sampling, None)

    async def completions(request: Request) -> Response:
        body = parse_json(await request.body(), state.limits)
        _check_model(state, body.get("model"))
        sampling = parse_sampling(body, state.limits, "text", state.tokenizer.vocab_size)
        prompt = parse_prompt(body)
        tok = state.tokenizer
        if isinstance(prompt, str):
            ids = [tok.bos_id, *tok.encode(prompt)]
        else:
            bad = [t for t in prompt if not 0 <= t < tok.vocab_size]
            if bad:
                raise APIError(400, f"token id {bad[0]} is out of range", param="prompt")
            ids = prompt
        return await _respond(
            state, request, "text", ids, frozenset((tok.bos_id,)), sampling,
            COMPLETIONS_DEFAULT_MAX_TOKENS,
        )  # fmt: skip

    async def stats(request: Request) -> Response:
        active, queued = state.engine.load()
        why = state.engine.health()
        return JSONResponse(
            {
                "model": state.model_id,
                "engine_alive": why is None,
                "engine_error": why,
                **state.metrics.snapshot(active=active, queued=queued, slots=state.engine.slots),
                "shapes_compiled": state.engine.compiled,
                "shapes": state.engine.shape_count,
            }
        )

    async def health(request: Request) -> Response:
        why = state.engine.health()
        if why is None:
            return JSONResponse({"status": "ok", "model": state.model_id})
        return JSONResponse({"status": "unavailable", "error": why}, status_code=503)

    async def api_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, APIError)
        if err.status >= 500:
            state.metrics.error()
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    async def http_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, HTTPException)
        message = {404: f"no route {request.url.path}", 405: f"{request.method} not allowed"}
        return JSONResponse(
            APIError(err.status_code, message.get(err.status_code, str(err.detail))).body(),
            status_code=err.status_code,
        )

    async def server_error(request: Request, err: Exception) -> Response:
        state.metrics.error()
        body = APIError(500, f"internal error: {type(err).__name__}", type="server_error").body()
        return JSONResponse(body, status_code=500)

    def lifespan(app: Starlette):
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def span(app: Starlette):
            if manage_engine:
                state.engine.start()
            try:
                yield
            finally:
                if manage_engine:
                    state.engine.stop()

        return span(app)

    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model:path}", model, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={
            APIError: api_error,
            HTTPException: http_error,
            Exception: server_error,
        },
        lifespan=lifespan,
    )
    if state.api_key:
        app.add_middleware(_BearerAuth, key=state.api_key)
    return app


class _BearerAuth:
    """Refuse requests without ``Authorization: Bearer KEY`` (constant-time comparison)."""

    def __init__(self, app, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                err = APIError(
                    401,
                    "missing or wrong API key; send 'Authorization: Bearer KEY'",
                    code="invalid_api_key",
                )
                await JSONResponse(err.body(), status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _model_card(state: ServeState) -> dict:
    return {"id": state.model_id, "object": "model", "created": state.created, "owned_by": "local"}


def _check_model(state: ServeState, name: object, status: int = 404) -> None:
    if not isinstance(name, str):
        raise APIError(400, "'model' must be a string", param="model")
    if name != state.model_id:
        raise APIError(
            status,
            f"the model {show(name)} does not exist; this server serves '{state.model_id}'",
            param="model",
            code="model_not_found",
        )


async def _respond(
    state: ServeState,
    request: Request,
    kind: str,
    ids: list[int],
    stop_ids: frozenset[int],
    sampling: Sampling,
    default_max: int | None,
) -> Response:
    """Check the context, queue the generation and answer as a stream or one body."""
    room = state.max_len - len(ids)
    if room < 1 or (sampling.max_tokens or 0) > room:
        asked = sampling.max_tokens or 1
        raise APIError(
            400,
            f"this model's maximum context length is {state.max_len} tokens; the prompt has "
            f"{len(ids)} tokens and {asked} were requested for the completion",
            param="messages" if kind == "chat" else "prompt",
            code="context_length_exceeded",
        )
    max_tokens = min(sampling.max_tokens or default_max or state.limits.max_tokens, room)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int | None, str | None]] = asyncio.Queue()
    req = GenRequest(
        ids=ids,
        max_tokens=max_tokens,
        emit=lambda tok, fin: loop.call_soon_threadsafe(queue.put_nowait, (tok, fin)),
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        seed=sampling.seed if sampling.seed is not None else secrets.randbelow(2**31),
        stop_ids=stop_ids,
        logprobs=sampling.logprobs,
        logit_bias=sampling.logit_bias,
        presence_penalty=sampling.presence_penalty,
        frequency_penalty=sampling.frequency_penalty,
    )
    try:
        state.engine.submit(req)
    except EngineUnavailable as down:
        raise _unavailable(str(down)) from None
    except QueueFull as full:
        state.metrics.rejected()
        raise APIError(
            429,
            f"all {state.engine.slots} slots are busy and the queue is full; retry shortly",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(full.retry_after)},
        ) from None
    gen = _Generation(state, req, queue, TextStream(state.tokenizer, sampling.stop), kind)
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    meta = {
        "id": f"{prefix}-{uuid.uuid4().hex[:24]}",
        "created": int(time.time()),
        "model": state.model_id,
    }
    if sampling.stream:
        return StreamingResponse(
            _sse(gen, meta, sampling.include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    return await _whole(gen, request, meta)


def _unavailable(why: str) -> APIError:
    return APIError(
        503, f"the server cannot generate now: {why}", type="server_error", code="unavailable"
    )


class _Generation:
    """The text pieces of one request, its logprobs and usage, as the engine produces them."""

    def __init__(
        self, state: ServeState, req: GenRequest, queue, text: TextStream, kind: str
    ) -> None:
        self.state, self.req, self.queue, self.text, self.kind = state, req, queue, text, kind
        self.finish_reason: str | None = None
        self.reported = 0  # tokens whose logprobs were sent
        self.token_text = TokenText(state.tokenizer) if req.logprobs is not None else None

    async def pieces(self) -> AsyncIterator[str]:
        """Text pieces until the reply ends; raises APIError if the engine failed it."""
        try:
            while True:
                tok, fin = await self.queue.get()
                if fin == "error":
                    self.finish_reason = "error"
                    raise APIError(500, self.req.error or "internal error", type="server_error")
                if fin == "unavailable":
                    self.finish_reason = "error"
                    raise _unavailable(self.req.error or "the engine stopped")
                if fin is not None:
                    if tail := self.text.flush():
                        yield tail
                    self.finish_reason = "length" if fin == "length" else "stop"
                    return
                self.state.metrics.tokens()
                piece = self.text.push(tok)
                if self.text.stopped:
                    self.state.engine.cancel(self.req)
                    self.finish_reason = "stop"
                    if piece:
                        yield piece
                    return
                if piece:
                    yield piece
        finally:
            if self.finish_reason is None:  # client gone or server stopping: free the slot
                self.state.engine.cancel(self.req)
            elif self.finish_reason != "error":
                self.state.metrics.finished(*self.timing())

    def logprobs(self) -> dict | None:
        """OpenAI's ``logprobs`` for the tokens not reported yet (None when not asked for)."""
        if self.token_text is None:
            return None
        start, end = self.reported, len(self.text.ids)
        self.reported = end
        ids, lps = self.text.ids[start:end], self.req.token_logprobs[start:end]
        if self.kind == "chat":
            return chat_logprobs(ids, lps, self.token_text)
        return completion_logprobs(ids, lps, self.text.offsets[start:end], self.token_text)

    def timing(self) -> tuple[float, float | None]:
        now = time.perf_counter()
        first = self.req.first_token
        return now - self.req.submitted, (first - self.req.submitted) if first else None

    def usage(self) -> dict:
        prompt, completion = len(self.req.ids), len(self.text.ids)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }


def _choice(gen: _Generation, text: str, finish: str | None, *, stream: bool) -> dict:
    logprobs = gen.logprobs()
    if gen.kind == "text":
        return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}
    if stream:
        delta = {"content": text} if text else {}
        return {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    message = {"role": "assistant", "content": text, "refusal": None}
    return {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}


async def _sse(gen: _Generation, meta: dict, include_usage: bool) -> AsyncIterator[str]:
    obj = "chat.completion.chunk" if gen.kind == "chat" else "text_completion"

    def event(choices: list[dict], **extra) -> str:
        usage = {"usage": None} if include_usage else {}
        return (
            f"data: {json.dumps({**meta, 'object': obj, 'choices': choices, **usage, **extra})}\n\n"
        )

    if gen.kind == "chat":
        yield event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                      "logprobs": None, "finish_reason": None}])  # fmt: skip
    try:
        async for piece in gen.pieces():
            yield event([_choice(gen, piece, None, stream=True)])
    except APIError as err:  # the status line is sent: the error is the stream's last event
        gen.state.metrics.error()
        yield f"data: {json.dumps(err.body())}\n\n"
        return
    yield event([_choice(gen, "", gen.finish_reason, stream=True)])
    if include_usage:
        yield event([], usage=gen.usage())
    yield "data: [DONE]\n\n"


async def _whole(gen: _Generation, request: Request, meta: dict) -> Response:
    """Collect the reply; if the client disconnects first, stop generating (frees the slot)."""

    async def collect() -> str:
        return "".join([piece async for piece in gen.pieces()])

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work, watch = asyncio.create_task(collect()), asyncio.create_task(disconnected())
    done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    if work not in done:
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        return Response(status_code=499)
    watch.cancel()
    text = work.result()  # an APIError from the engine answers through the error handler
    obj = "chat.completion" if gen.kind == "chat" else "text_completion"
    return JSONResponse(
        {
            **meta,
            "object": obj,
            "choices": [_choice(gen, text, gen.finish_reason, stream=False)],
            "usage": gen.usage(),
        }
    )
