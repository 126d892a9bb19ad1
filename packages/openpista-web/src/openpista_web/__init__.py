"""Web channel for openpista: WebSocket server and a mobile-first browser chat."""
