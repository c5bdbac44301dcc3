"""``python -m mendflow.cli``: the same as the ``mendflow`` command."""

from mendflow.cli import main

main()
