"""The openpista plugin module of openpista-mobile (entry point ``mobile``)."""
