"""``python -m maitre [OPTIONS] MODULE:OBJECT``: the same as ``maitre-serve``."""

from maitre.runner import main

if __name__ == "__main__":
    main()
