"""The openpista plugin module of openpista-desktop (entry point ``desktop``)."""
