"""Browser tools for openpista: Chromium over the DevTools protocol."""
