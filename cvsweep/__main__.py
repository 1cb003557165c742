from cvsweep.app import main

main()
