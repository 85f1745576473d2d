"""`python -m app` starts the program exactly like the `lms-unlocked` console script."""

import sys

from app.cli import main

sys.exit(main())
