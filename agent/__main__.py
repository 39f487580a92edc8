"""``python -m agent --config configs/agent.yaml``: the same as ``beamagent agent``."""

import sys

from agent.cli import main

sys.exit(main())
