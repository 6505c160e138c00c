"""`python -m rdsweep.report`, as the rdsweep-report command."""

from rdsweep.report.cli import main

main()
