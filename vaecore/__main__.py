"""``python -m vaecore spirals ...``: see vaecore.experiments.main."""
import sys

from .experiments import main

sys.exit(main())
