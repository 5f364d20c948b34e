"""Constitution-driven synthetic data (Constitutional AI's critique → revision loop).

For each prompt: ask the endpoint for an answer; ask it to critique that answer against one
principle of the project's SOUL (drawn deterministically from the prompt's id); ask it for a
revision. The revision becomes the SFT answer and the preference pair's ``chosen``; the first
answer is ``rejected``. Files and their write discipline: align/synth_store.py.

Resumable: a row's id hashes its prompt, principle and generation settings, so rerunning the same
command skips rows already written ``ok`` and retries skipped ones; changing the model or the
settings makes new rows beside the old.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nanochat_tui import projects
from nanochat_tui.align import synth_store as store
from nanochat_tui.align.endpoint import STOP, ChatClient, Endpoint, EndpointError, Problem
from nanochat_tui.align.ratelimit import Limiter
from nanochat_tui.align.soul import Principle
from nanochat_tui.errors import UserError

TEMPLATE_VERSION = 1
CRITIQUE_REQUEST = (
    "Identify specific ways in which your last response goes against this principle: {text}"
)
REVISION_REQUEST = (
    "Rewrite your response so that it follows this principle: {text}\n"
    "Reply with the rewritten response only."
)
MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str


@dataclass(frozen=True)
class SynthSettings:
    """What to generate and how fast. Rates are per minute; ``None`` means unlimited."""

    project: str
    set_name: str = "synth"
    prompts: Path | None = None  # a JSONL file; None → the embedded stdlib prompts
    limit: int | None = None
    concurrency: int = 4
    rpm: float | None = None
    tpm: float | None = None
    price_per_1k: float = 0.0
    max_tokens: int = 256
    temperature: float = 0.7
    max_retries: int = 5
    backoff_base: float = 1.0
    accept_all: bool = False

    def validate(self) -> None:
        checks = [
            (self.concurrency >= 1, "--concurrency must be at least 1"),
            (self.limit is None or self.limit >= 1, "--limit must be at least 1"),
            (self.rpm is None or self.rpm > 0, "--rpm must be positive"),
            (self.tpm is None or self.tpm > 0, "--tpm must be positive"),
            (self.price_per_1k >= 0, "--price-per-1k cannot be negative"),
            (self.max_tokens >= 1, "--max-tokens must be at least 1"),
            (
                0 <= self.temperature <= 2,
                f"--temperature must be between 0 and 2, not {self.temperature:g}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        projects.check_name(self.set_name, "set")


@dataclass
class Progress:
    """Counts for the progress bar; tokens and cost are this session's."""

    total: int = 0
    already: int = 0  # rows found done when the run started
    done: int = 0  # rows written ok this session
    skipped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    started: float = field(default_factory=time.monotonic)
    price_per_1k: float = 0.0
    stopped: str | None = None  # why the run stopped early, if it did
    skipped_prompt_lines: int = 0

    @property
    def finished(self) -> int:
        return self.already + self.done + self.skipped

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float:
        return self.tokens / 1000 * self.price_per_1k

    def eta(self) -> float | None:
        """Seconds left at this session's pace; None before the first row."""
        handled = self.done + self.skipped
        if handled == 0:
            return None
        left = self.total - self.finished
        return left * (time.monotonic() - self.started) / handled


# ---------------------------------------------------------------- prompts


def prompt_id(text: str) -> str:
    return "p-" + hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def load_prompts(path: Path) -> tuple[list[Prompt], list[str]]:
    """Prompts from a JSONL file ``{"id"?, "prompt"}``; broken lines are skipped and described."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"prompt file {path} does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(
            f"cannot read prompt file {path}: {err}", "use a UTF-8 JSONL file"
        ) from None
    prompts: list[Prompt] = []
    problems: list[str] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {n}"
        try:
            row = json.loads(line)
        except ValueError as err:
            problems.append(f"{where}: not JSON ({err.msg}) — line skipped")
            continue
        text = row.get("prompt") if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            problems.append(f'{where}: no "prompt" string — line skipped')
            continue
        if len(text) > MAX_PROMPT_CHARS:
            problems.append(f"{where}: prompt over {MAX_PROMPT_CHARS} characters — line skipped")
            continue
        pid = row.get("id")
        pid = str(pid) if isinstance(pid, str | int) and str(pid).strip() else prompt_id(text)
        if pid in seen:
            problems.append(f"{where}: id {pid!r} already used above — line skipped")
            continue
        seen.add(pid)
        prompts.append(Prompt(pid, text))
    if not prompts:
        raise UserError(
            f"prompt file {path} has no usable prompts ({len(problems)} broken lines)",
            'write one JSON object per line: {"id": "optional", "prompt": "..."}',
        )
    return prompts, problems


def embedded_prompts() -> list[Prompt]:
    """The embedded stdlib questions (align/embedded.py), in a fixed shuffled order so that
    ``--limit`` draws from every module."""
    from nanochat_tui.align.embedded import identity_conversations, stdlib_conversations

    texts = [c["messages"][0]["content"] for c in stdlib_conversations()]
    random.Random(0).shuffle(texts)
    texts += [c["messages"][0]["content"] for c in identity_conversations()]
    return [Prompt(prompt_id(t), t) for t in dict.fromkeys(texts)]


# ---------------------------------------------------------------- SOUL


def soul_principles(project: str) -> tuple[str, list[Principle]]:
    """(SOUL version label, principles) of ``project``'s newest SOUL; UserError without any."""
    version = projects.open_project(project).read()
    soul = version.soul()
    if not soul.principles:
        raise UserError(
            f"project {project!r}: SOUL {version.label} has no principles to critique against",
            "add at least one '### <title>' under '## Principles' (SOUL pane)",
        )
    return version.label, list(soul.principles)


def draw_principle(pid: str, principles: list[Principle]) -> Principle:
    """The principle for prompt ``pid``: a hash of the id picks it, so reruns pick the same."""
    digest = hashlib.blake2b(pid.encode(), digest_size=8, person=b"cai-princ").digest()
    return principles[int.from_bytes(digest, "little") % len(principles)]


def row_id(prompt: Prompt, principle: Principle, fingerprint: dict) -> str:
    """The stable id of a row: a hash of its prompt, principle and generation settings."""
    key = json.dumps(
        {"prompt": prompt.text, "principle": asdict(principle), "settings": fingerprint},
        sort_keys=True,
    )
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


# ---------------------------------------------------------------- generation


class Generator:
    """One generation run: rows to do, the client, the trace log and the progress."""

    def __init__(
        self,
        settings: SynthSettings,
        endpoint: Endpoint,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_problem: Callable[[Problem], None] | None = None,
        on_request: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        settings.validate()
        if not endpoint.base_url.startswith(("http://", "https://")):
            raise UserError(
                f"endpoint {endpoint.base_url!r} is not an http:// or https:// URL",
                "give the base URL, e.g. http://127.0.0.1:8000/v1",
            )
        self.settings = settings
        self.endpoint = endpoint
        self.paths = store.SetPaths(settings.project, settings.set_name)
        self.on_progress = on_progress or (lambda p: None)
        self.on_problem = on_problem or (lambda p: None)
        self.on_request = on_request
        self.stop = stop or threading.Event()
        self.soul_version, self.principles = soul_principles(settings.project)
        if settings.prompts is None:
            prompts, self.prompt_problems = embedded_prompts(), []
        else:
            prompts, self.prompt_problems = load_prompts(Path(settings.prompts))
        self.prompts = prompts[: settings.limit] if settings.limit else prompts
        self.fingerprint = {
            "model": endpoint.model,
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "template": TEMPLATE_VERSION,
        }
        self.progress = Progress(total=len(self.prompts), price_per_1k=settings.price_per_1k)
        self.progress.skipped_prompt_lines = len(self.prompt_problems)

    def rows(self) -> list[tuple[str, Prompt, Principle]]:
        out = []
        for prompt in self.prompts:
            principle = draw_principle(prompt.id, self.principles)
            out.append((row_id(prompt, principle, self.fingerprint), prompt, principle))
        return out

    def run(self) -> Progress:
        """Generate every row not yet done (blocking); then re-export the datasets."""
        for line in self.prompt_problems:
            self.on_problem(Problem("prompt_line", line, "skip"))
        with store.writer_lock(self.paths):
            try:
                asyncio.run(self._run())
            finally:
                if self.settings.accept_all:
                    self._accept_all()
                store.export(self.paths)
        return self.progress

    def _accept_all(self) -> None:
        pending = [r.id for r in store.review_rows(self.paths) if r.review == "pending"]
        if pending:
            store.decide(self.paths, pending, "accepted")

    async def _run(self) -> None:
        done = {
            rid for rid, r in store.latest(store.read_log(self.paths.trace)).items()
            if r.get("status") == "ok"
        }  # fmt: skip
        todo = [row for row in self.rows() if row[0] not in done]
        self.progress.already = self.progress.total - len(todo)
        self.progress.started = time.monotonic()
        self.on_progress(self.progress)
        if not todo:
            return
        client = ChatClient(
            self.endpoint,
            Limiter(self.settings.rpm, self.settings.tpm),
            max_retries=self.settings.max_retries,
            backoff_base=self.settings.backoff_base,
            on_problem=self._problem,
            on_request=self._requested,
        )
        gate = asyncio.Semaphore(self.settings.concurrency)
        with store.AppendLog(self.paths.trace) as trace:
            tasks = [asyncio.create_task(self._row(client, gate, trace, *row)) for row in todo]
            watcher = asyncio.create_task(self._watch_stop(tasks))
            try:
                await asyncio.gather(*tasks)
            except asyncio.CancelledError:
                if not self.stop.is_set():
                    raise  # Ctrl-C or a cancelled caller: not ours to swallow
            finally:
                watcher.cancel()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, watcher, return_exceptions=True)
                await client.aclose()
        if self.stop.is_set() and self.progress.stopped is None:
            self.progress.stopped = "stopped by the user"
        self.on_progress(self.progress)

    def _problem(self, problem: Problem) -> None:
        if self.progress.stopped is None:  # once stopped, rows still in flight say nothing new
            self.on_problem(problem)

    def _requested(self, t: float) -> None:
        self.progress.requests += 1
        if self.on_request is not None:
            self.on_request(t)

    async def _watch_stop(self, tasks: list[asyncio.Task]) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()

    async def _row(
        self,
        client: ChatClient,
        gate: asyncio.Semaphore,
        trace: store.AppendLog,
        rid: str,
        prompt: Prompt,
        principle: Principle,
    ) -> None:
        async with gate:
            if self.stop.is_set():
                return
            record = {
                "id": rid,
                "prompt_id": prompt.id,
                "prompt": prompt.text,
                "principle": asdict(principle),
                "soul_version": self.soul_version,
                "settings": self.fingerprint,
            }
            turns: list[dict] = [{"role": "user", "content": prompt.text}]
            requests = (
                None,
                principle.critique or CRITIQUE_REQUEST.format(text=principle.text),
                principle.revision or REVISION_REQUEST.format(text=principle.text),
            )
            replies: list[str] = []
            try:
                for request in requests:
                    if request is not None:
                        turns.append({"role": "user", "content": request})
                    reply = await client.chat(
                        turns,
                        max_tokens=self.settings.max_tokens,
                        temperature=self.settings.temperature,
                    )
                    self.progress.prompt_tokens += reply.prompt_tokens
                    self.progress.completion_tokens += reply.completion_tokens
                    turns.append({"role": "assistant", "content": reply.text})
                    replies.append(reply.text)
            except EndpointError as err:
                # no await between here and the write: a cancel cannot tear the record
                record.update(status="skipped", reason=err.problem.describe(), turns=turns)
                record["at"] = time.time()
                trace.append(record)
                self.progress.skipped += 1
                if err.problem.policy == STOP:
                    self.progress.stopped = err.problem.describe()
                    self.stop.set()
                self.on_progress(self.progress)
                return
            answer, critique, revision = replies
            record.update(status="ok", answer=answer, critique=critique, revision=revision)
            record.update(turns=turns, at=time.time())
            trace.append(record)
            self.progress.done += 1
            self.on_progress(self.progress)


def generate(settings: SynthSettings, endpoint: Endpoint, **callbacks) -> Progress:
    """Build a ``Generator`` and run it (blocking); see ``Generator`` for the callbacks."""
    return Generator(settings, endpoint, **callbacks).run()
