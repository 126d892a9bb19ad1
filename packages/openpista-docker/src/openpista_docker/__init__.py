"""Docker sandbox for openpista: isolated per-task workers (container.run)."""
