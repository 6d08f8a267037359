"""Ponder's router: an OpenAI-compatible front door that spends test-time compute by difficulty.

Modules, in layers (a module imports only from layers below it):

Pure policy — no I/O, no clock, no logging; shared with the offline evaluator and the
autoscaler simulator:

- ``errors``     — the error tree (``PonderRouterError`` and what each subclass means);
- ``difficulty`` — prompt-only difficulty estimates (``DifficultyEstimator``, logistic
  ``FeatureEstimator``, ``fit_logistic`` for calibration);
- ``answers``    — final-answer extractors by name and LaTeX answer normalisation;
- ``budgets``    — the budget policy: tier, tokens, samples, strategy, load shrink,
  expected demand (``assign_budget``, ``expected_request_tokens``);
- ``demand``     — what a request's running and waiting samples are still expected to
  write under the thinking-budget rules (``expected_remaining_tokens``);
- ``aggregate``  — tallies, majority / weighted / best-of-N, adaptive stopping and wave
  planning (``should_stop``, ``plan_next_wave``).

Within the policy layer: ``errors`` < ``difficulty``, ``answers`` < ``budgets`` <
``aggregate``.

Adapters and service — thin layers that validate, call the policy and do the I/O:

- ``settings``   — process settings from ``PONDER_…`` environment variables and the
  operator's ConfigMap, validated at start and on change;
- ``api``        — the OpenAI chat-completions request and response schemas;
- ``triton``     — the gRPC streaming client for Triton's decoupled LLM models;
- ``endpoints``  — the Triton endpoint pool: static or discovered by watching pods,
  least outstanding work, retries on another endpoint;
- ``admission``  — queues per service and tenant, API keys, 429 with ``Retry-After``;
- ``executor``   — one request: budget, samples in waves, early stop and cancellation;
- ``metrics``    — the Prometheus series the autoscaler and the cost report read;
- ``app``        — ``create_app()``: the HTTP routes around the executor;
- ``main``       — the ``ponder-router`` console script.

Offline, the tools package replays recorded samples through the same policy
(``ponder evaluate``, ``ponder calibrate``); this package never imports it (``.importlinter``).
"""
