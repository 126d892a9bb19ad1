"""The openpista plugin module of openpista-whatsapp (entry point ``whatsapp``)."""
