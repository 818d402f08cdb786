"""``python -m gpsgpu``: the same command line as the ``gpsgpu`` script."""

from gpsgpu.cli import main

main()
