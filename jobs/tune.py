"""Sweep the model a recipe names with Ray Tune: ``python jobs/tune.py --config
jobs/dcgan-digits.yaml --data s3://bucket/data/digits --storage s3://bucket/sweeps --samples 8``.

Every ``genart tune`` flag passes through (``--space``, ``--scheduler``, ``--budget``, ...).
"""

import sys

from common import run_recipe

if __name__ == "__main__":
    sys.exit(run_recipe("tune"))
