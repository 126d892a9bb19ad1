"""Test helpers for openpista and its plugins: contract suites and the LLM emulator."""
