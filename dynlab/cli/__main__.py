from dynlab.cli import main

main()
