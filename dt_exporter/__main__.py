import sys

from dt_exporter.cli import main

sys.exit(main())
