"""``python -m npjem ...``: the command line of :mod:`npjem.cli`."""
import sys

from .cli import main

sys.exit(main())
