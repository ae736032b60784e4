"""A task's saved conversation (anthropic backend), as braid stores it on the task's transcript ref.

The ref `refs/braid/<run>/transcripts/<task>` holds a commit whose tree has one file,
`transcript.json`: this document. The messages are what the agent sent to the Messages
API, in the API's own shape. An agent influenced all of it, so it is data to check, never
to run: a read-back document is bounded in size and validated here, field by field, and
anything else is refused.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .common import COMMIT_PATTERN, Model
from .status import Usage

TRANSCRIPT_FILE = "transcript.json"
MAX_TRANSCRIPT_BYTES = 2 * 1024 * 1024
"""A saved conversation is at most this large; a larger one is neither written nor read back."""
FORMAT = 1

_ID = r"^[A-Za-z0-9_-]{1,256}$"


class _Part(BaseModel):
    """A piece of a Messages API message: its field names as the API spells them, nothing else allowed."""

    model_config = ConfigDict(extra="forbid")


class TextBlock(_Part):
    type: Literal["text"]
    text: str = Field(min_length=1)


class ToolUseBlock(_Part):
    type: Literal["tool_use"]
    id: str = Field(pattern=_ID)
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    input: dict[str, Any]


class ToolResultBlock(_Part):
    type: Literal["tool_result"]
    tool_use_id: str = Field(pattern=_ID)
    content: str | list[TextBlock]
    is_error: bool | None = None


class ThinkingBlock(_Part):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(_Part):
    type: Literal["redacted_thinking"]
    data: str


Block = Annotated[TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock,
                  Field(discriminator="type")]


class Message(_Part):
    role: Literal["user", "assistant"]
    content: list[Block] = Field(min_length=1, max_length=1024)


class Ended(Model):
    """How the attempt that pushed this conversation ended, as braid's publish step saw it."""

    ok: bool
    reason: str | None = Field(None, max_length=128)
    message: str | None = Field(None, max_length=4096)


class Transcript(Model):
    version: Literal[1] = FORMAT
    fingerprint: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of what the conversation is about: model, system prompt, tools and the task's first "
        "message. A conversation whose fingerprint differs from the new attempt's is not continued.",
    )
    usage: Usage = Field(default_factory=Usage, description="What the whole conversation spent, over every attempt.")
    omitted_turns: int = Field(0, ge=0, description="Earlier turns left out to keep the conversation within bounds.")
    messages: list[Message] = Field(min_length=1, max_length=10000)
    commit: str | None = Field(None, pattern=COMMIT_PATTERN,
                               description="The task branch commit pushed together with this conversation.")
    ended: Ended | None = None

    def api_messages(self) -> list[dict[str, Any]]:
        """The messages as the Messages API takes them."""
        return [m.model_dump(mode="json", exclude_none=True) for m in self.messages]

    def dumps(self) -> bytes:
        """Compact ASCII JSON: its length in characters is its size in bytes."""
        return json.dumps(self.wire(), separators=(",", ":")).encode()


class InvalidTranscript(ValueError):
    """A saved conversation that is too large, not JSON, or not in the shape braid writes."""


def parse_transcript(data: bytes) -> Transcript:
    """The document in `data`, checked. Raises InvalidTranscript saying why it is refused (never its content)."""
    if len(data) > MAX_TRANSCRIPT_BYTES:
        raise InvalidTranscript(f"it is larger than {MAX_TRANSCRIPT_BYTES} bytes ({len(data)})")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        raise InvalidTranscript("it is not JSON") from None
    try:
        return Transcript.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidTranscript(f"{where or 'the document'}: {first.get('msg', 'invalid')} "
                                f"({exc.error_count()} problem(s))") from None
    except RecursionError:
        raise InvalidTranscript("it is nested too deeply") from None
