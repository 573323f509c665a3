"""Helpers shared by the tests (servers, fixtures' building blocks)."""
