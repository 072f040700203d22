"""Build (or check) the ``dataset=linux`` corpus cache ahead of training, as the trainer would.

    python scripts/prepare_corpus.py                                   # system headers, 5 MB
    python scripts/prepare_corpus.py --source kernel        # /usr/src/linux-source-*.tar.xz
    python scripts/prepare_corpus.py --source /path/to/linux.tar.xz --size-mb 6

Prints the cache folder and its manifest (source and an archive's sha256, the selected files,
bytes, sha256 of the text). An existing cache is loaded and its sha256 verified instead of
being rebuilt.
"""

from __future__ import annotations

import argparse
import json
import sys

from experiments.data.linux import build_corpus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source", help="kernel tree, tar archive, or 'kernel' (default: headers found)"
    )
    parser.add_argument("--size-mb", type=float, default=5.0, help="cap in 10^6 bytes")
    parser.add_argument("--data-dir", default="data", help="paths.data_dir of the runs")
    args = parser.parse_args(argv)
    try:
        corpus = build_corpus(args.source, args.size_mb, args.data_dir)
    except ValueError as err:
        sys.exit(f"error: {err}")
    print(corpus.cache_dir)
    print(json.dumps(corpus.manifest, indent=2))


if __name__ == "__main__":
    main()
