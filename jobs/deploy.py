"""Export a trained run and serve it: ``python jobs/deploy.py s3://bucket/runs/digits-1
--out s3://bucket/models/digits --serve-config serve_config.yaml``.

The export (generator weights + resolved config, no pickled code) goes to ``--out``; Serve
replicas on any node load it from there, so it should be shared storage. An ``--out`` inside
the catalogue a running application serves (``s3://bucket/models/<name>``) answers as ``<name>``
at once, with no redeploy. With ``--serve-config`` the applications of that Serve config
(which names the catalogue) are deployed on the cluster and keep running after this job ends
(``serve shutdown -y`` removes them).
"""

import argparse
import sys

from genart.cli import main


def deploy(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="export a run, then optionally serve it")
    parser.add_argument("run", help="run folder or checkpoint (local or s3://)")
    parser.add_argument("--out", required=True, help="export folder (local or s3://)")
    parser.add_argument("--serve-config", help="Serve config YAML whose app args name --out")
    args = parser.parse_args(argv)
    code = main(["export", args.run, "--out", args.out])
    if code or not args.serve_config:
        return code
    return main(["serve", "--config", args.serve_config, "--no-block"])


if __name__ == "__main__":
    sys.exit(deploy(sys.argv[1:]))
