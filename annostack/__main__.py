from annostack.cli import main

main()
