"""One chat call to an OpenAI-compatible endpoint, with the failure policy spelled out.

Every failure becomes a ``Problem`` with a kind, a one-line message and the policy applied:

| kind | when | policy |
|---|---|---|
| ``rate_limited`` | HTTP 429 | retry after ``Retry-After`` (or exponential backoff); skip the row when retries run out |
| ``server`` | HTTP 5xx | the same |
| ``timeout`` | no reply within the timeout | the same |
| ``unreachable`` | connection refused / DNS / TLS | retry with backoff; stop the run when retries run out |
| ``auth`` | HTTP 401 / 403 | stop the run: the key is wrong or missing |
| ``model`` | HTTP 404 | stop the run: the model (or the URL) is unknown |
| ``bad_request`` | other 4xx (e.g. context too long) | skip the row |
| ``malformed`` | a reply without text, or not JSON | skip the row |

The API key travels only in the ``Authorization`` header; every message that could carry text
from the server is scrubbed of it before anyone sees it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from nanochat_tui.align.ratelimit import Limiter, backoff_delay, estimate_tokens, parse_retry_after

RETRY, SKIP, STOP = "retry", "skip", "stop"
FINAL_POLICY = {"rate_limited": SKIP, "server": SKIP, "timeout": SKIP, "unreachable": STOP}


@dataclass(frozen=True)
class Endpoint:
    """Where to send requests. ``api_key`` is never shown (``repr`` hides it)."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0

    def scrub(self, text: str) -> str:
        """``text`` with the API key replaced by ``***``."""
        return text.replace(self.api_key, "***") if self.api_key else text


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None


@dataclass(frozen=True)
class Problem:
    """A failed attempt: what happened and what is done about it (``retry``/``skip``/``stop``)."""

    kind: str
    message: str
    policy: str
    status: int | None = None
    delay: float | None = None  # seconds until the retry, for ``retry``

    def describe(self) -> str:
        what = {
            RETRY: f"retrying in {self.delay:.1f} s" if self.delay is not None else "retrying",
            SKIP: "row skipped (a rerun retries it)",
            STOP: "run stopped",
        }[self.policy]
        return f"{self.kind}: {self.message} — {what}"


class EndpointError(Exception):
    """A call that will not be retried any more; ``problem.policy`` is ``skip`` or ``stop``."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.describe())
        self.problem = problem


def _classify(status: int, detail: str) -> tuple[str, str, str]:
    """(kind, message, policy) for an HTTP error status."""
    if status == 429:
        return "rate_limited", f"HTTP 429 rate limited: {detail}", RETRY
    if status >= 500:
        return "server", f"HTTP {status} server error: {detail}", RETRY
    if status in (401, 403):
        return (
            "auth",
            f"HTTP {status}: the endpoint refused the API key ({detail}); "
            "store the right key under the key name, or check --api-key-env",
            STOP,
        )
    if status == 404:
        return (
            "model",
            f"HTTP 404: {detail}; check the model name and that the base URL ends in /v1",
            STOP,
        )
    return "bad_request", f"HTTP {status}: {detail}", SKIP


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
    except (ValueError, AttributeError):
        message = None
    return str(message or response.text[:200] or response.reason_phrase).strip()


def parse_reply(body: object) -> Reply:
    """The text and usage of a chat completion body; ValueError naming what is missing."""
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("choices"), list)
        or not body["choices"]
    ):
        raise ValueError("the reply has no choices")
    choice = body["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the reply's message has no text")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return Reply(
        text=text,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=choice.get("finish_reason"),
    )


class ChatClient:
    """Chat completions against ``endpoint`` under ``limiter``, retrying per the table above.

    ``on_problem`` hears every failed attempt (retries included); ``on_request`` every request
    sent (its monotonic time), for progress and tests."""

    def __init__(
        self,
        endpoint: Endpoint,
        limiter: Limiter | None = None,
        *,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        on_problem: Callable[[Problem], None] | None = None,
        on_request: Callable[[float], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.limiter = limiter or Limiter()
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.on_problem = on_problem or (lambda problem: None)
        self.on_request = on_request or (lambda t: None)
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self.http = httpx.AsyncClient(
            base_url=endpoint.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=endpoint.timeout,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def chat(self, messages: list[dict], *, max_tokens: int, temperature: float) -> Reply:
        """One reply; retries 429/5xx/timeouts/connection errors; EndpointError when it gives up."""
        body = {
            "model": self.endpoint.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        estimate = estimate_tokens(messages, max_tokens)
        attempt = 0
        while True:
            await self.limiter.acquire(estimate)
            self.on_request(time.monotonic())
            kind, message, policy, status, retry_after = await self._attempt(body, estimate)
            if kind == "ok":
                return message  # type: ignore[return-value]
            message = self.endpoint.scrub(message)
            if policy == RETRY and attempt >= self.max_retries:
                message = f"{message} (gave up after {attempt + 1} attempts)"
                policy = FINAL_POLICY[kind]
            if policy != RETRY:
                problem = Problem(kind, message, policy, status)
                self.on_problem(problem)
                raise EndpointError(problem)
            delay = backoff_delay(attempt, retry_after, base=self.backoff_base)
            self.on_problem(Problem(kind, message, RETRY, status, delay))
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(self, body: dict, estimate: int) -> tuple:
        """(kind, Reply or message, policy, status, retry_after) for one HTTP request."""
        try:
            response = await self.http.post("chat/completions", json=body)
        except httpx.TimeoutException:
            return "timeout", f"no reply within {self.endpoint.timeout:.0f} s", RETRY, None, None
        except httpx.TransportError as err:
            where = self.endpoint.base_url
            return "unreachable", f"cannot reach {where} ({type(err).__name__})", RETRY, None, None
        if response.status_code != 200:
            kind, message, policy = _classify(response.status_code, _error_detail(response))
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            return kind, message, policy, response.status_code, retry_after
        try:
            body = response.json()
        except ValueError:
            return "malformed", "malformed reply: not JSON", SKIP, 200, None
        try:
            reply = parse_reply(body)
        except (ValueError, TypeError, AttributeError) as err:
            return "malformed", f"malformed reply: {err}", SKIP, 200, None
        self.limiter.settle(estimate, reply.prompt_tokens + reply.completion_tokens)
        return "ok", reply, "", 200, None
