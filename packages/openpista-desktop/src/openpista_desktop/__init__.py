"""Desktop tools for openpista: screen, OCR, mouse, keyboard, clipboard, notify."""
