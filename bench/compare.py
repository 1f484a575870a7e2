"""Run the comparison from a checkout: ``python bench/compare.py [options]``.

The engine is ``fastsoft._benchmark`` (``python -m fastsoft bench``, or the
``fastsoft-bench`` script, once fastsoft is installed); this file only makes it
reachable from a source tree whose extension was built in place, and takes the same
options (``--help`` lists them).
"""

import sys
from pathlib import Path

try:
    import fastsoft._benchmark as engine
except ImportError:
    # not installed: use the checkout's own src/ (its extension must have been built)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import fastsoft._benchmark as engine

if __name__ == "__main__":
    sys.exit(engine.main(prog="bench/compare.py"))
