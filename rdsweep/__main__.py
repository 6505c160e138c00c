from rdsweep.main import main

main()
