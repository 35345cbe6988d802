"""`python -m agentplatform`: the command-line tool."""

import sys

from agentplatform.cli.main import main

sys.exit(main())
