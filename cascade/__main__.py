"""``python -m cascade``: the cascade command line."""

if __name__ == "__main__":
    from cascade.cli import main

    raise SystemExit(main())
