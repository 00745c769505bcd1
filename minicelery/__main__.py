"""``python -m minicelery``."""

from minicelery.cli.main import main

main()
