"""Train the model a recipe names: ``python jobs/train.py --config jobs/dcgan-digits.yaml
--data s3://bucket/data/digits --storage s3://bucket/runs --name digits-1``.

Every ``genart train`` flag passes through (``--steps``, ``--workers``, ``--resume``, ``--set``).
Resubmitting with the same ``--name`` and ``--resume`` continues from the newest complete
checkpoint after a crash or a ``ray job stop``.
"""

import sys

from common import run_recipe

if __name__ == "__main__":
    sys.exit(run_recipe("train"))
