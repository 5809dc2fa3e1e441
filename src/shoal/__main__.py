"""``python -m shoal``: the same entry point as the ``shoal`` console script."""

from shoal.cli.main import main

if __name__ == "__main__":
    main()
