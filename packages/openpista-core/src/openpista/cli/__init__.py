"""The ``openpista`` command line."""
