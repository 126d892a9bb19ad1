"""The full-screen terminal chat (`openpista tui`)."""
