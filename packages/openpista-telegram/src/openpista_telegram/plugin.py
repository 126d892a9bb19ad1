"""The openpista plugin module of openpista-telegram (entry point ``telegram``)."""
