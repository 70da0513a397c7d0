"""Allow ``python -m totd_faith``."""

from totd_faith.cli import main

if __name__ == "__main__":
    main()
