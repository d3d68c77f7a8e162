from maitre.runner import main

main()
