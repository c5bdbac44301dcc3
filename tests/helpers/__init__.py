"""Helpers shared by the tests: plain functions and classes, never fixtures (those live in
conftest.py files, which import from here)."""
