"""``python -m evidence``: the same command as ``evidence``."""

from evidence.cli import main

main()
