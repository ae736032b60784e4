"""What a CLI agent spent, from what it says about itself: a usage file, or its structured output.

Two sources, both written by the agent and so untrusted:

- the file named by BRAID_USAGE_FILE, a small JSON object any wrapper may write
  (`UsageReport`);
- the agent's stdout when it is Claude Code's `--output-format json` (one result object)
  or `stream-json` (JSON lines: assistant messages with their usage, then the result).

Nothing here is ever an error: output braid does not recognise means "no usage
reported". Reading is bounded: the file by size, stdout line by line with long lines
skipped unread, and at the end only the last part of what was not read yet.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import from_json

from braid.api import Pricing, Usage

from .pricing import price_for, turn_usage

USAGE_FILE_ENV = "BRAID_USAGE_FILE"
MAX_USAGE_FILE = 64 * 1024
MAX_LINE = 1024 * 1024
"""Longer lines of stdout are skipped: no result or message of an agent is that long."""
READ_STEP = 1024 * 1024
"""At most this much of stdout is read per look while the agent runs."""
MAX_FINAL_SCAN = 16 * 1024 * 1024
"""Once the agent ended, at most the last this-many unread bytes of stdout are looked at."""
MAX_MESSAGES = 10_000
"""Distinct model responses followed in a stream; more are not counted live (the result still is)."""
MAX_SUMMARY = 20_000

Count = Annotated[int, Field(ge=0, le=10**12)]
Cost = Annotated[float, Field(ge=0, le=1_000_000)]
ModelName = Annotated[str, Field(max_length=128)]


class UsageReport(BaseModel):
    """The BRAID_USAGE_FILE object. Strict: counts are non-negative integers, the cost a finite number."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid", alias_generator=to_camel)

    input_tokens: Count = 0
    output_tokens: Count = 0
    cache_write_tokens: Count = 0
    cache_read_tokens: Count = 0
    cost_usd: Cost | None = Field(None, alias="costUSD")
    """USD; when absent braid prices the tokens with its table for `model`."""
    model: ModelName | None = None


class _Lenient(BaseModel):
    """Claude Code's objects: the fields braid reads are checked strictly, the others ignored."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", populate_by_name=True)


class _ApiUsage(_Lenient):
    """The Messages API's usage object, as Claude Code passes it on."""

    input_tokens: Count | None = None
    output_tokens: Count | None = None
    cache_creation_input_tokens: Count | None = None
    cache_read_input_tokens: Count | None = None

    def counts(self) -> dict[str, int]:
        named = {"input": self.input_tokens, "output": self.output_tokens,
                 "cache_write": self.cache_creation_input_tokens, "cache_read": self.cache_read_input_tokens}
        return {k: v for k, v in named.items() if v is not None}


class _ModelUsage(_Lenient):
    """One entry of a result's `modelUsage`."""

    input_tokens: Count = Field(0, alias="inputTokens")
    output_tokens: Count = Field(0, alias="outputTokens")
    cache_creation_input_tokens: Count = Field(0, alias="cacheCreationInputTokens")
    cache_read_input_tokens: Count = Field(0, alias="cacheReadInputTokens")
    cost_usd: Cost | None = Field(None, alias="costUSD")


class _Result(_Lenient):
    """The result object ending `--output-format json` and `stream-json` output."""

    type: Literal["result"]
    usage: _ApiUsage | None = None
    model_usage: dict[ModelName, _ModelUsage] | None = Field(None, alias="modelUsage", max_length=64)
    total_cost_usd: Cost | None = None
    result: str | None = None
    is_error: bool | None = None
    subtype: Annotated[str, Field(max_length=100)] | None = None


class _Message(_Lenient):
    id: Annotated[str, Field(max_length=200)] | None = None
    model: ModelName | None = None
    usage: _ApiUsage | None = None
    content: list[Any] | None = None


class _Assistant(_Lenient):
    type: Literal["assistant"]
    message: _Message


class _StreamEvent(_Lenient):
    """`--include-partial-messages`: the API's own stream events, output token counts included."""

    type: Literal["stream_event"]
    event: dict[str, Any]
    api_message_id: Annotated[str, Field(max_length=200)] | None = None


def _usage(counts: dict[str, int], price_model: str | None, pricing: dict[str, Pricing] | None,
           cost: float | None = None) -> Usage:
    """Counts as Usage: at `cost` when the agent said what they cost, else at braid's price for the model."""
    price = price_for(price_model, pricing) if price_model and cost is None else None
    usage = turn_usage(price, counts.get("input", 0), counts.get("output", 0), counts.get("cache_write", 0),
                       counts.get("cache_read", 0))
    if cost is not None:
        usage.cost_usd, usage.unpriced_tokens = round(cost, 6), None
    return usage


def report_usage(report: UsageReport, model: str | None, pricing: dict[str, Pricing] | None) -> Usage:
    counts = {"input": report.input_tokens, "output": report.output_tokens,
              "cache_write": report.cache_write_tokens, "cache_read": report.cache_read_tokens}
    return _usage(counts, report.model or model, pricing, report.cost_usd)


def read_usage_file(path: str | os.PathLike[str]) -> tuple[UsageReport | None, str | None]:
    """(the report, None), or (None, why it was not read); (None, None) when there is no file.

    The agent wrote the file: a symlink, a FIFO or a device is refused without being
    followed or opened for long, and its content never appears in the reason.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot be opened ({exc.strerror})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, "is not a regular file"
        data = os.read(fd, MAX_USAGE_FILE + 1)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    finally:
        os.close(fd)
    if len(data) > MAX_USAGE_FILE:
        return None, f"is larger than {MAX_USAGE_FILE // 1024} KiB"
    if not data.strip():
        return None, "is empty"
    try:
        return UsageReport.model_validate_json(data), None
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))[:60]
        return None, f"{where!r}: {first.get('msg', 'invalid')}" if where else f"{first.get('msg', 'invalid')}"


class OutputUsage:
    """What a CLI's stdout says it spent, fed one line at a time."""

    def __init__(self) -> None:
        self._messages: dict[str, dict[str, int]] = {}
        """Each response's usage, by message id: the largest value seen of each count (they only grow)."""
        self._models: dict[str, str] = {}
        self._anonymous = 0
        self.result: _Result | None = None
        self.last_text = ""
        """The newest text an assistant message had (the summary when no result came)."""

    @property
    def recognised(self) -> bool:
        return self.result is not None or bool(self._messages)

    def feed(self, line: bytes) -> None:
        """One line of stdout; anything but a JSON object of a known shape is passed over."""
        line = line.strip()
        if not line.startswith(b"{") or len(line) > MAX_LINE:
            return
        try:
            data = from_json(line, allow_inf_nan=False)
        except ValueError:
            return
        if isinstance(data, dict):
            self.feed_object(data)

    def feed_object(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        try:
            if kind == "result":
                self.result = _Result.model_validate(data)
            elif kind == "assistant":
                self._assistant(_Assistant.model_validate(data).message)
            elif kind == "stream_event":
                self._stream_event(_StreamEvent.model_validate(data))
        except ValidationError:
            return

    def _assistant(self, message: _Message) -> None:
        if message.usage is not None:
            self._count(message.id, message.model, message.usage)
        texts = [b.get("text") for b in message.content or [] if isinstance(b, dict) and b.get("type") == "text"]
        text = "\n".join(t for t in texts if isinstance(t, str)).strip()
        if text:
            self.last_text = text[:MAX_SUMMARY]

    def _stream_event(self, line: _StreamEvent) -> None:
        event = line.event
        if event.get("type") == "message_start" and isinstance(event.get("message"), dict):
            message = _Message.model_validate(event["message"])
            if message.usage is not None:
                self._count(message.id, message.model, message.usage)
        elif event.get("type") == "message_delta" and line.api_message_id and isinstance(event.get("usage"), dict):
            self._count(line.api_message_id, None, _ApiUsage.model_validate(event["usage"]))

    def _count(self, message_id: str | None, model: str | None, usage: _ApiUsage) -> None:
        if message_id is None:
            self._anonymous += 1
            message_id = f"#{self._anonymous}"
        if message_id not in self._messages and len(self._messages) >= MAX_MESSAGES:
            return
        seen = self._messages.setdefault(message_id, {})
        for name, value in usage.counts().items():
            seen[name] = max(seen.get(name, 0), value)
        if model:
            self._models[message_id] = model

    @property
    def model(self) -> str | None:
        """The model the newest response came from."""
        return next(reversed(self._models.values()), None)

    def usage(self, model: str | None, pricing: dict[str, Pricing] | None) -> Usage | None:
        """What the output says was spent so far: the result's figures once it came, else the sum of
        the responses seen, priced with braid's table (`model` when a response names none)."""
        if self.result is not None:
            spent = self._result_usage(self.result, model or self.model, pricing)
            if spent is not None:
                return spent
        if not self._messages:
            return None
        total = Usage()
        for message_id, counts in self._messages.items():
            total = total + _usage(counts, self._models.get(message_id) or model, pricing)
        return total

    @staticmethod
    def _result_usage(result: _Result, model: str | None, pricing: dict[str, Pricing] | None) -> Usage | None:
        if result.model_usage:
            # every model the CLI used (side requests and subagents too), each with its cost
            total = Usage()
            for name, entry in result.model_usage.items():
                counts = {"input": entry.input_tokens, "output": entry.output_tokens,
                          "cache_write": entry.cache_creation_input_tokens, "cache_read": entry.cache_read_input_tokens}
                total = total + _usage(counts, name, pricing, entry.cost_usd)
        elif result.usage is not None:
            total = _usage(result.usage.counts(), model, pricing, result.total_cost_usd)
        elif result.total_cost_usd is not None:
            total = Usage()
        else:
            return None
        if result.total_cost_usd is not None:
            total.cost_usd, total.unpriced_tokens = round(result.total_cost_usd, 6), None
        return total

    def summary(self) -> str | None:
        """The agent's final words, when its output said them."""
        if self.result is not None and self.result.result and self.result.result.strip():
            return self.result.result.strip()[:MAX_SUMMARY]
        return self.last_text or None

    def failure(self) -> str | None:
        """What the result says went wrong, when it says so."""
        if self.result is None or not self.result.is_error:
            return None
        words = (self.result.result or "").strip().splitlines()[:1] or [self.result.subtype or ""]
        return words[0][:300] or None


class Lines:
    """Complete lines of a file another process appends to, read in bounded steps.

    Reads with pread, so the writer's file offset (which it may share with this
    process) is never moved. A line longer than `max_line` is skipped, not kept.
    """

    def __init__(self, fd: int, max_line: int = MAX_LINE):
        self.fd = fd
        self.max_line = max_line
        self.pos = 0
        self._buf = b""
        self._skipping = False

    def read(self, step: int = READ_STEP) -> list[bytes]:
        """The lines completed by up to `step` more bytes."""
        data = os.pread(self.fd, step, self.pos)
        self.pos += len(data)
        return self._split(data)

    def rest(self, scan: int = MAX_FINAL_SCAN) -> Iterator[bytes]:
        """After the writer ended: the lines still unread, within the last `scan` bytes, and an unterminated last one."""
        size = os.fstat(self.fd).st_size
        if size - self.pos > scan:
            # too much to look at: only the end, from the next line on (the result is the last line)
            self.pos, self._buf, self._skipping = size - scan, b"", True
        while self.pos < size:
            before = self.pos
            got = self.read()
            if self.pos == before:
                break
            yield from got
        if self._buf and not self._skipping:
            yield self._buf
        self._buf, self._skipping = b"", False

    def _split(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        parts = data.split(b"\n")
        lines = []
        for part in parts[:-1]:
            if not self._skipping and len(self._buf) + len(part) <= self.max_line:
                lines.append(self._buf + part)
            self._buf, self._skipping = b"", False
        if not self._skipping:
            self._buf += parts[-1]
            if len(self._buf) > self.max_line:
                self._buf, self._skipping = b"", True
        return lines
