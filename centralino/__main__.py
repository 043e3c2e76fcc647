from centralino.cli import main

main()
