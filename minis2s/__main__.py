import sys

from minis2s.cli import main

sys.exit(main())
