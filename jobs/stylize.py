"""Stylise every content image with every style image, as Ray tasks across the cluster:
``python jobs/stylize.py --contents DIR --styles DIR --out DIR [--size 256 --iterations 300]``.

A thin alias of ``genart stylize gatys-batch``: every flag passes through.
"""

import sys

from genart.cli import main

if __name__ == "__main__":
    sys.exit(main(["stylize", "gatys-batch", *sys.argv[1:]]))
