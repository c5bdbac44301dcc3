"""Fixtures shared by the tests of flows/ (the fake model APIs)."""

from tests.fakes.fixtures import fake_anthropic, fake_openai

__all__ = ["fake_anthropic", "fake_openai"]
