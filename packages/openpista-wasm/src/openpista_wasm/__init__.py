"""WASM skill sandbox for openpista (wasmtime, WASI)."""
