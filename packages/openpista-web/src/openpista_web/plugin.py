"""The openpista plugin module of openpista-web (entry point ``web``)."""
