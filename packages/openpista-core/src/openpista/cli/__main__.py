"""``python -m openpista.cli``: the same as the ``openpista`` command."""

from openpista.cli.main import main

main()
