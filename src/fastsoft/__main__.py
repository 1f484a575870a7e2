"""``python -m fastsoft COMMAND``: ``bench`` (the comparison) or ``config``."""

import sys

USAGE = """usage: python -m fastsoft {bench,config} [options]

commands:
  bench    time fastsoft against NumPy, SciPy, PyTorch and JAX (python -m fastsoft bench -h)
  config   print fastsoft.show_config()
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command, options = (argv[0], argv[1:]) if argv else (None, [])
    if command == "bench":
        from ._benchmark import main as bench

        return bench(options, prog="python -m fastsoft bench")
    if command == "config":
        from . import show_config

        show_config()
        return 0
    if command in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    print(USAGE, end="", file=sys.stderr)
    if command is not None:
        print(f"python -m fastsoft: error: unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
