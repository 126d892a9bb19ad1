"""The openpista plugin module of openpista-wasm (entry point ``wasm``)."""
