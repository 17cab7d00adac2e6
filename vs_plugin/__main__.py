"""``python -m vs_plugin`` runs the command line (also under torchrun)."""

import sys

from .cli.main import main

sys.exit(main())
