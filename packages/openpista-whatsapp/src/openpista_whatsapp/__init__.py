"""WhatsApp Business Cloud API channel for openpista (signed webhook + Graph API)."""
