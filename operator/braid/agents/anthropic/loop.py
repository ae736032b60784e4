"""The anthropic backend: a tool-use loop with the Messages API through the official SDK."""

from __future__ import annotations

import time
import warnings
from typing import Any

import anthropic
from pydantic import ValidationError

from braid.api import InvalidTranscript, Transcript, Usage
from braid.plan import BUDGET_EXCEEDED, share_spent

from ..base import AgentContext, AgentError, AgentOutcome
from ..command import minimal_env
from ..pricing import Price, price_for, turn_usage
from . import conversation, prompt
from .errors import classify
from .retry import Interrupted, Retrier
from .settings import Settings, model_access
from .tools import Toolbox

CUT_OFF = (
    "not run: your response reached the max_tokens limit before this call was complete. "
    "Send it again in smaller pieces (for example, write a large file in several steps)."
)


class AnthropicAgent:
    def run(self, ctx: AgentContext) -> AgentOutcome:
        settings = Settings.of(ctx)
        key = model_access(ctx).key
        price = price_for(settings.model, ctx.agent.pricing)
        if price is None:
            if ctx.budget is not None and ctx.budget.max_cost_usd is not None:
                raise AgentError(
                    "UnknownPricing",
                    f"budget.maxCostUSD is set but braid knows no price for model {settings.model!r}: "
                    f"add agent.pricing.{settings.model} (USD per million tokens)",
                )
            ctx.log.warning(
                "no price known for model %s: its cost is reported as 0; set agent.pricing.%s to count it",
                settings.model, settings.model,
            )
        return Session(ctx, settings, key, price).run()


class Session:
    """One task's conversation: turns, tool calls, usage, and why it ended."""

    def __init__(self, ctx: AgentContext, settings: Settings, key: str, price: Price | None):
        self.ctx = ctx
        self.settings = settings
        self.price = price
        self.usage = Usage()
        self.summary = ""
        self.deadline = time.monotonic() + ctx.timeout_seconds
        self._key = key
        self._warned: set[str] = set()
        self.system = prompt.system_blocks(settings.system_prompt, prompt.repository_notes(ctx.workdir))
        self.tool_defs = prompt.tool_definitions()
        self.first = prompt.first_message(ctx)
        # the repository's notes are left out: a new attempt reads them afresh
        self.fingerprint = conversation.fingerprint(settings.model, self.system[0]["text"], self.tool_defs,
                                                    self.first)
        self.messages: list[dict[str, Any]] = [self.first]
        self.prior = Usage()
        """What the conversation this attempt continues had spent."""
        self.carried = Usage()
        """The part of `prior` that braid's count of the task's attempts (ctx.spent) does not hold."""
        self.omitted = 0
        self.answered = False
        """A response arrived in this attempt: until then the saved conversation stays as it was."""
        self.tools = Toolbox(ctx.workdir, self._tool_env(), ctx.cancel, self.time_left, self.redact, ctx.sandbox,
                             ctx.placement)
        self.retrier = Retrier(settings.max_retries, ctx.cancel, self.time_left, ctx.log)
        # the key is the proxy's placeholder and base_url the proxy; retries are
        # braid's (retry.py), so the SDK makes none of its own
        self.client = anthropic.Anthropic(api_key=key, base_url=settings.base_url, max_retries=0,
                                          timeout=settings.request_timeout)

    def redact(self, text: str) -> str:
        text = self.ctx.redact(text)
        return text.replace(self._key, "[REDACTED]") if text and self._key else text

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def _tool_env(self) -> dict[str, str]:
        """The command tool's environment: minimal, without even the placeholder key or the proxy's address."""
        env = minimal_env(self.ctx)
        for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
            env.pop(name, None)
        return {k: v for k, v in env.items() if self._key not in v}

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> AgentOutcome:
        try:
            return self._loop()
        except Interrupted:
            return self._cancelled()
        except anthropic.APIError as exc:
            if isinstance(exc, anthropic.APIConnectionError) and self.time_left() <= 1:
                return self._timed_out()
            reason, message = classify(exc, self.settings.model, self.retrier.retries)
            self.ctx.log.error("%s: %s", reason, self.redact(message))
            return self._end(False, reason, message)
        except Exception as exc:
            self.ctx.log.exception("the anthropic agent failed")
            return self._end(False, "AgentFailed", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.client.close()

    def _loop(self) -> AgentOutcome:
        messages = self.messages = self._start()
        if (over := share_spent(self.carried, self.ctx.budget)) is not None:
            return self._end(False, BUDGET_EXCEEDED, f"not continued: the conversation of earlier attempts {over}")
        max_turns = self.settings.max_turns
        for turn in range(1, max_turns + 1):
            if (stopped := self._interrupted()) is not None:
                return stopped
            message, complete = self.retrier.call(lambda: self._ask(messages))
            if message is not None:
                self.answered = True
                self._count(turn, message)
            if not complete:
                return self._interrupted() or self._cancelled()
            content = [p for p in (_as_param(b) for b in message.content) if p is not None]
            text = "\n".join(b.text for b in message.content if b.type == "text").strip()
            if text:
                self.summary = text
            reason = message.stop_reason
            if reason == "refusal":
                return self._end(False, "Refused", "the model declined to continue (stop reason: refusal)")
            if reason == "model_context_window_exceeded":
                return self._end(False, "ContextWindowExceeded", "the conversation outgrew the model's context window")
            if content:
                messages.append({"role": "assistant", "content": content})
            if reason in ("end_turn", "stop_sequence", None) or not content:
                return self._end(True)
            if reason in ("tool_use", "max_tokens"):
                self._save()  # what the model asked for, should the attempt end while it runs
            if reason == "tool_use":
                results = self._run_tools(message)
                messages.append({"role": "user", "content": results})
            elif reason == "max_tokens":
                messages.append({"role": "user", "content": self._cut_off(message)})
            # pause_turn: the assistant message goes back as it is and the model resumes it
            self._save()
            if (over := share_spent(self.usage + self.carried, self.ctx.budget)) is not None:
                return self._end(False, BUDGET_EXCEEDED, f"stopped after turn {turn}: {over}")
        return self._end(False, "MaxTurns", f"stopped after maxTurns ({max_turns}) turns without finishing")

    def _ask(self, messages: list[dict[str, Any]]) -> tuple[Any, bool]:
        """One streamed response and True; the partial response and False if cancelled or out of time.

        Streaming keeps a long response within reach of cancellation and the deadline,
        and keeps large maxTokens values working (a non-streamed request is capped).
        """
        timeout = max(1.0, min(self.settings.request_timeout, self.time_left()))
        # the SDK warns about deprecated models through `warnings`, which nobody sees
        # in a pod: pass them on to the task log, once
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            manager = self.client.messages.stream(
                model=self.settings.model,
                max_tokens=self.settings.max_tokens,
                system=self.system,
                tools=self.tool_defs,
                messages=prompt.with_cache_mark(messages),
                timeout=timeout,
            )
        for warning in caught:
            text = " ".join(str(warning.message).split())
            if text not in self._warned:
                self._warned.add(text)
                self.ctx.log.warning("%s", text)
        with manager as stream:
            for _event in stream:
                if self.ctx.cancel.is_set() or self.time_left() <= 0:
                    return _snapshot(stream), False
            return stream.get_final_message(), True

    def _run_tools(self, message: Any) -> list[dict[str, Any]]:
        results = []
        for block in message.content:
            if block.type != "tool_use":
                continue
            if self.ctx.cancel.is_set():
                result_text, is_error = "not run: the task is being cancelled", True
            else:
                result = self.tools.call(block.name, block.input)
                result_text, is_error = result.content, result.is_error
                if is_error:
                    self.ctx.log.info("tool %s failed: %s", block.name, result_text.splitlines()[0][:200])
            entry: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.id, "content": result_text}
            if is_error:
                entry["is_error"] = True
            results.append(entry)
        return results

    def _cut_off(self, message: Any) -> list[dict[str, Any]]:
        calls = [b for b in message.content if b.type == "tool_use"]
        if calls:
            return [{"type": "tool_result", "tool_use_id": b.id, "content": CUT_OFF, "is_error": True} for b in calls]
        return [{"type": "text", "text": "Your response was cut off by the max_tokens limit; continue where it stopped."}]

    # -- the saved conversation --------------------------------------------------------------

    def _start(self) -> list[dict[str, Any]]:
        """The conversation to send first: an earlier attempt's, continued, when it applies; else the task."""
        path, log = self.ctx.transcript, self.ctx.log
        if path is None:
            return [self.first]
        try:
            saved = conversation.load(path)
            if saved is None:
                return [self.first]
            if saved.fingerprint != self.fingerprint:
                log.info("the conversation of an earlier attempt is not continued: the task's prompt, the system "
                         "prompt or the model (or braid's tools) changed since; starting afresh")
                return [self.first]
            messages = conversation.repair(saved.api_messages(), self.first)
        except InvalidTranscript as exc:
            log.warning("the conversation of an earlier attempt is not continued: %s; starting afresh", exc)
            return [self.first]
        room = conversation.RESUME_TOKENS * conversation.CHARS_PER_TOKEN - 2 * conversation.NOTE_LIMIT - 1000
        fitted = conversation.fit(messages, room)
        if fitted is None or len(fitted[0]) < 2:
            log.warning("the conversation of an earlier attempt is not continued: %s; starting afresh",
                        "it has no response to continue from" if fitted is not None else
                        f"its last turn alone is over about {conversation.RESUME_TOKENS} tokens")
            return [self.first]
        messages, dropped = fitted
        self.prior, self.omitted = saved.usage, saved.omitted_turns + dropped
        self.carried = conversation.carried(saved.usage, self.ctx.spent)
        log.info("continuing the conversation of an earlier attempt: %d messages%s; it had spent $%.4f, "
                 "%d tokens in and out", len(messages), f" ({dropped} older turns left out)" if dropped else "",
                 saved.usage.cost_usd, saved.usage.input_tokens + saved.usage.output_tokens)
        note = conversation.resume_note(saved.ended, self.omitted, bool(self.ctx.depends_on))
        return conversation.with_note(messages, note)

    def _save(self) -> None:
        """Write the conversation so far where the runner pushes it from; a problem is logged, never raised."""
        path = self.ctx.transcript
        if path is None or not self.answered:
            return
        try:
            saved = Transcript.model_validate({
                "fingerprint": self.fingerprint, "usage": (self.prior + self.usage).wire(),
                "omittedTurns": self.omitted, "messages": self.messages,
            })
            if not conversation.save(path, saved):
                self._warn_once("the conversation is too large to save, even with older turns left out")
        except ValidationError as exc:
            self._warn_once(f"the conversation cannot be saved: {exc.errors()[0].get('msg', 'invalid')}")
        except OSError as exc:
            self._warn_once(f"the conversation cannot be saved: {exc.strerror or exc}")

    def _warn_once(self, text: str) -> None:
        if text not in self._warned:
            self._warned.add(text)
            self.ctx.log.warning("%s", text)

    # -- bookkeeping ------------------------------------------------------------------------

    def _count(self, turn: int, message: Any) -> None:
        u = message.usage
        usage = turn_usage(
            self.price,
            u.input_tokens or 0,
            u.output_tokens or 0,
            u.cache_creation_input_tokens or 0,
            u.cache_read_input_tokens or 0,
        )
        self.usage = self.usage + usage
        names = [b.name for b in message.content if b.type == "tool_use"]
        self.ctx.log.info(
            "turn %d/%d: %s; tokens in %d, out %d, cache write %d, cache read %d; cost $%.4f (task $%.4f)",
            turn, self.settings.max_turns, "tools " + ", ".join(names) if names else f"stop {message.stop_reason}",
            usage.input_tokens, usage.output_tokens, usage.cache_write_tokens, usage.cache_read_tokens,
            usage.cost_usd, self.usage.cost_usd,
        )

    def _interrupted(self) -> AgentOutcome | None:
        if self.ctx.cancel.is_set():
            return self._cancelled()
        if self.time_left() <= 0:
            return self._timed_out()
        return None

    def _cancelled(self) -> AgentOutcome:
        return self._end(False, "Cancelled", "cancelled; the work so far is kept")

    def _timed_out(self) -> AgentOutcome:
        return self._end(False, "Timeout", f"timed out after {self.ctx.timeout_seconds:g}s; the work so far is kept")

    def _end(self, ok: bool, reason: str | None = None, message: str | None = None) -> AgentOutcome:
        self._save()
        return AgentOutcome(
            ok,
            summary=self.redact(self.summary),
            usage=self.usage,
            reason=reason,
            message=self.redact(message) if message else None,
        )


def _snapshot(stream: Any) -> Any:
    try:
        return stream.current_message_snapshot
    except AssertionError:
        return None


def _as_param(block: Any) -> dict[str, Any] | None:
    """A response block as it must be sent back in the conversation."""
    kind = block.type
    if kind == "text":
        return {"type": "text", "text": block.text} if block.text else None
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if kind == "thinking":
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data}
    return block.model_dump(mode="json", exclude_none=True)
