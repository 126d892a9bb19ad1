"""Mobile channel for openpista over QUIC (aioquic server and client)."""
