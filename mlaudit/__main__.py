from mlaudit.cli.main import main

main()
