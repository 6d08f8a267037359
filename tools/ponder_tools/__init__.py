"""Ponder's offline tools: the ``ponder`` command line, never imported by the pods.

Packages, each a subcommand of ``cli``:

- ``sim``        — ``ponder simulate``: real request traces against the autoscaling policy
  (``ponder_operator.policy``) and the HPA / KEDA baselines;
- ``evaluation`` — ``ponder evaluate`` and ``ponder calibrate``: recorded samples replayed
  through the router's pure policy (``ponder_router.difficulty``, ``budgets``,
  ``answers``, ``aggregate``);
- ``costreport`` — ``ponder cost report``: GPU time and cost from Prometheus.

``data`` says where the shared public data is read from. The tools import the product's
pure policy; the product never imports the tools (``.importlinter``). Plotting needs the
``tools`` extra (``pip install 'ponder[tools]'``).
"""
