"""Hyper-parameter sweeps with Ray Tune.

``genart.tune.space``: search spaces as YAML data keyed by config paths (built-in ones in
``spaces/<model>.yaml``), validated against the typed configs. ``genart.tune.sweep``: the
driver, where every trial is a whole Ray Train run of the one training loop (or, for Gatys, one
image optimisation), with ASHA, PBT or FIFO scheduling, resume, and a results report.
"""
