"""Fixtures around the Messages API stand-in.

Import them into a test module (`from fakes.conftest_plugin import messages_api`) or
list this module in a conftest's `pytest_plugins`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .messages_api import MessagesAPI

FAKE_API_KEY = "sk-ant-standin-7f3c9a1e5b2d4c6e8f0a"


@pytest.fixture
def messages_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[MessagesAPI]:
    """A running stand-in that expects FAKE_API_KEY; ANTHROPIC_BASE_URL points the SDK at it."""
    with MessagesAPI(api_key=FAKE_API_KEY) as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
        monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
        yield api
