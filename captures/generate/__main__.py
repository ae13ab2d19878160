"""Deterministic generator of the bundled sample captures (described in captures/README.md).

The command line::

    python captures/generate              # rewrite every capture + .expected.json + .truth.json
    python captures/generate --out DIR    # write them to DIR instead (the test does this)
    python captures/generate --new-keys   # regenerate the TEST-ONLY keys in captures/keys/
    python captures/generate --archives   # rewrite captures/archives/ (SAZ and HAR versions)

(``python -m generate`` from captures/ is the same.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as ``python captures/generate``: import the package from captures/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from generate.archives import write_archives
from generate.bundle import generate
from generate.constants import HERE
from generate.keys import load_keys, new_keys
from generate.scenarios.certificates import write_derived_certs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="generate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: captures/)")
    parser.add_argument(
        "--new-keys",
        action="store_true",
        help="regenerate the TEST-ONLY keys in captures/keys/ first",
    )
    parser.add_argument(
        "--archives",
        action="store_true",
        help="only write captures/archives/: the SAZ and HAR versions of committed captures",
    )
    args = parser.parse_args(argv)
    if args.archives:
        for path in write_archives(HERE / "archives"):
            print(path.relative_to(HERE))
        return 0
    if args.new_keys:
        new_keys()
        write_derived_certs(load_keys())
    for name, n in generate(args.out).items():
        print(f"{name}: {n} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
