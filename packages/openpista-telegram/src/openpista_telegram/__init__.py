"""Telegram channel for openpista (aiogram 3, long polling or webhook)."""
