"""The openpista plugin module of openpista-browser (entry point ``browser``)."""
