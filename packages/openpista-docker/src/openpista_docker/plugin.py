"""The openpista plugin module of openpista-docker (entry point ``docker``)."""
