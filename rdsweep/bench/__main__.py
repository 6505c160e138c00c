from rdsweep.bench.cli import main

main()
