"""Hyper-parameter sweeps with Ray Tune.

* ``space``: search spaces as YAML data keyed by config paths (built-in ones in
  ``spaces/<model>.yaml``), validated against the typed configs.
* ``settings``: how a sweep searches (:class:`~genart.tune.settings.Settings`), what each trial
  starts from (a base config, or an optimisation job), checked before Ray starts.
* ``driver``: starts or resumes a sweep of a trained family (:func:`~genart.tune.driver.sweep`)
  or of an optimisation family (:func:`~genart.tune.driver.sweep_optimisation`) with ASHA, PBT
  or FIFO scheduling.
* ``trials``: the Tune functions: a whole Ray Train run of the one training loop, or one
  optimised image, per trial.
* ``report``: the results table, best recipe and plots a finished sweep writes.

The Ray workarounds the trials rely on live in :mod:`genart.compat`.
"""
