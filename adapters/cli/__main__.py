"""``python -m servermode.adapters.cli``: the ``servermode`` command."""

from .commands import main

main()
