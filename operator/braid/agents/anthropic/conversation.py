"""Saving a task's conversation as it goes, and continuing one an earlier attempt saved.

The runner fetches the conversation braid pushed with the task's work (if it still applies
to the branch the attempt resumes) into a file; the loop continues it when it is about the
same task (its fingerprint: model, system prompt, tools, first message), repairs what an
abrupt end left unfinished, bounds it, and tells the model that a new attempt begins. The
loop rewrites the file after every response and every round of tool results, so whatever
ends the attempt, the runner pushes the conversation up to its last complete step.

A saved conversation is data an agent influenced: it is parsed as JSON, validated
(braid.api.transcript), bounded, and never run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from braid.api import MAX_TRANSCRIPT_BYTES, Ended, InvalidTranscript, Transcript, Usage, parse_transcript

CHARS_PER_TOKEN = 3
"""A cautious estimate of JSON characters per token (code and English are nearer 3.5-4)."""
RESUME_TOKENS = 100_000
"""At most this many estimated tokens of an earlier conversation are sent again; older turns are left out."""
SAVE_MARGIN = 16 * 1024
"""Room left under MAX_TRANSCRIPT_BYTES for what the runner adds when it pushes (commit, how it ended)."""
NOTE_LIMIT = 600

NOT_RUN = ("not run: the attempt that asked for this call ended before its result was saved; "
           "the working copy shows whether it had any effect")
NOTE_MARK = "[braid] An earlier attempt at this task"


def fingerprint(model: str, system: str, tools: list[dict[str, Any]], first: dict[str, Any]) -> str:
    """What a conversation is about: a new attempt continues a saved one only when this is unchanged."""
    tools = [{k: v for k, v in t.items() if k != "cache_control"} for t in tools]
    data = json.dumps({"model": model, "system": system, "tools": tools, "first": first}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()


def load(path: Path) -> Transcript | None:
    """The conversation saved at `path`, checked; None when there is none. Raises InvalidTranscript."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_TRANSCRIPT_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidTranscript(f"it cannot be read: {exc.strerror}") from None
    return parse_transcript(data)


def repair(messages: list[dict[str, Any]], first: dict[str, Any]) -> list[dict[str, Any]]:
    """A conversation the Messages API accepts, from a saved one.

    It must start with this task's first message and alternate between user and assistant,
    each round of tool results answering exactly the calls before it. What an abrupt end
    leaves at the end is mended: calls without results get a "not run" result, missing
    results of the last round are added, an assistant message of nothing but thinking is
    dropped. Anything wrong before the end raises InvalidTranscript.
    """
    out = [dict(m, content=list(m["content"])) for m in messages]
    if not out or out[0]["role"] != "user" or out[0]["content"][:1] != first["content"][:1]:
        raise InvalidTranscript("it does not start with this task's first message")
    while out[-1]["role"] == "assistant" and all(b["type"] in ("thinking", "redacted_thinking")
                                                 for b in out[-1]["content"]):
        out.pop()
    for i, message in enumerate(out):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise InvalidTranscript(f"message {i} is from the {message['role']} where the {expected} speaks")
        kinds = {b["type"] for b in message["content"]}
        wrong = kinds & ({"tool_use", "thinking", "redacted_thinking"} if expected == "user" else {"tool_result"})
        if wrong:
            raise InvalidTranscript(f"message {i} ({expected}) holds {', '.join(sorted(wrong))}")
    for i in range(1, len(out), 2):
        calls = [b["id"] for b in out[i]["content"] if b["type"] == "tool_use"]
        if len(set(calls)) != len(calls):
            raise InvalidTranscript(f"message {i} repeats a tool call id")
        if i + 1 == len(out):
            if calls:
                out.append({"role": "user", "content": [_not_run(c) for c in calls]})
            break
        answer = out[i + 1]["content"]
        results = [b for b in answer if b["type"] == "tool_result"]
        answered = [b["tool_use_id"] for b in results]
        missing = [c for c in calls if c not in answered]
        if len(set(answered)) != len(answered) or not set(answered) <= set(calls) or (missing and i + 2 < len(out)):
            raise InvalidTranscript(f"message {i + 1} does not answer the tool calls of message {i}")
        # results first, as the API wants them; only the last round may lack some
        out[i + 1]["content"] = results + [_not_run(c) for c in missing] + [b for b in answer
                                                                            if b["type"] != "tool_result"]
    return out


def _not_run(call_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": NOT_RUN, "is_error": True}


def fit(messages: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], int] | None:
    """`messages` within `limit` characters of JSON, leaving out the oldest turns after the first message;
    with the number of turns left out. None when even the first message and the last turn do not fit.

    A turn is an assistant message and the user message answering it, so what is left still alternates
    and every tool call keeps its result.
    """
    sizes = [_size(m) + 1 for m in messages]
    total, start, dropped = sum(sizes), 1, 0
    while total > limit:
        if len(messages) - start < 3:
            return None
        total -= sizes[start] + sizes[start + 1]
        start, dropped = start + 2, dropped + 1
    return [messages[0], *messages[start:]], dropped


def _size(message: dict[str, Any]) -> int:
    """Characters of `message` as Transcript.dumps writes it."""
    return len(json.dumps(message, separators=(",", ":")))


def resume_note(ended: Ended | None, omitted: int, has_dependencies: bool) -> str:
    """What the model is told when a new attempt continues the conversation."""
    if ended is None:
        what = f"{NOTE_MARK} stopped here."
    elif ended.ok:
        what = f"{NOTE_MARK} finished here (it answered without calling a tool)."
    else:
        why = ": ".join(x for x in (ended.reason, ended.message) if x) or "unknown"
        what = f"{NOTE_MARK} stopped here: {why[:NOTE_LIMIT]}."
    where = ("The working copy holds what was committed and pushed when it ended"
             + (", with the current work of the tasks this one depends on merged in" if has_dependencies else "")
             + ": anything done after the last push may be missing, so look at the files again before you "
             "rely on what the conversation shows.")
    left_out = (f" {omitted} earlier turn{'s' if omitted != 1 else ''} of this conversation "
                f"{'are' if omitted != 1 else 'is'} left out to keep it within bounds." if omitted else "")
    ask = ("Check that the task is still done and answer with a summary as before." if ended is not None and ended.ok
           else "Continue the task from where it stopped.")
    return f"{what} This is a new attempt, which continues the conversation. {where}{left_out} {ask}"


def with_note(messages: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """`messages` with `note` said by the user last: after the last round of tool results, or as a new message."""
    block = {"type": "text", "text": note}
    if messages[-1]["role"] == "user":
        return [*messages[:-1], {**messages[-1], "content": [*messages[-1]["content"], block]}]
    return [*messages, {"role": "user", "content": [block]}]


def carried(prior: Usage, spent: Usage | None) -> Usage:
    """What a continued conversation spent that braid's own count of this task's attempts does not hold."""
    spent = spent or Usage()
    return Usage(
        input_tokens=max(0, prior.input_tokens - spent.input_tokens),
        output_tokens=max(0, prior.output_tokens - spent.output_tokens),
        cost_usd=round(max(0.0, prior.cost_usd - spent.cost_usd), 6),
    )


def save(path: Path, transcript: Transcript) -> bool:
    """Write `transcript` to `path` whole (never a half-written file), left out turns as needed to stay
    within the size limit; False when even that does not fit."""
    data = transcript.dumps()
    limit = MAX_TRANSCRIPT_BYTES - SAVE_MARGIN
    if len(data) > limit:
        messages = [m.model_dump(mode="json", exclude_none=True) for m in transcript.messages]
        overhead = len(data) - sum(_size(m) + 1 for m in messages)
        fitted = fit(messages, limit - overhead)
        if fitted is None:
            return False
        kept, dropped = fitted
        transcript = transcript.model_copy(update={
            "messages": Transcript.model_validate({**transcript.wire(), "messages": kept}).messages,
            "omitted_turns": transcript.omitted_turns + dropped,
        })
        data = transcript.dumps()
        if len(data) > limit:
            return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True
