"""`python3 lab/cdlab ...` and `python3 -m cdlab ...` (with lab/ on the path)."""

import os
import sys

if not __package__:
    # Run as a directory, Python put lab/cdlab/ itself first on sys.path: put
    # lab/ there instead, so that the package is imported as a package and its
    # files (lab.py, vm.py, ...) never as top-level modules.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from cdlab.cli import main  # noqa: E402  pylint: disable=wrong-import-position

sys.exit(main())
