import sys

from job_runner.main import main

sys.exit(main())
