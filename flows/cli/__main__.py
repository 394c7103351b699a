import sys

from flows.cli.command import main

sys.exit(main())
