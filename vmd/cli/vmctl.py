"""`vmctl`: the command-line publisher, in the manner of Danube Cloud's `es`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("vmctl: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
