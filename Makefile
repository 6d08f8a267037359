# Ponder — the two commands that matter: `make demo` and `make test`.
# Both set up what is missing first (hack/setup.sh: idempotent, cached in ~/.cache/ponder).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test unit integration e2e demo lint bench soak crds clean

setup:
	hack/setup.sh

test: setup lint
	$(PY) -m pytest tests $(PYTEST_ARGS)

# The unit tier needs only the virtualenv: no Kubernetes build, no helm, promtool or Triton
# (tests/unit/conftest.py fails a unit test that starts one or leaves loopback).
unit:
	hack/setup.sh python
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: setup
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

demo: setup
	$(PY) -m ponder_localstack.demo

# Style, types, and the import contracts of .importlinter (checked on this checkout's sources).
lint:
	$(VENV)/bin/ruff check operator router tools localstack tests bench
	$(VENV)/bin/mypy --config-file pyproject.toml operator/ponder_operator router/ponder_router tools/ponder_tools localstack/ponder_localstack
	PYTHONPATH=operator:router:tools:localstack $(VENV)/bin/lint-imports

# Regenerate what is generated from the pydantic models and the chart (drift tests check it).
crds:
	$(PY) -m ponder_operator.api.crd > crds/reasoningservices.ponder.dev.yaml
	cp crds/*.yaml charts/ponder/crds/
	$(PY) hack/gen_crd_docs.py
	hack/render-manifests.sh

# Benchmarks: each runs its comparison side by side and writes bench/results/.
bench: setup
	$(PY) bench/bench_autoscaler.py
	$(PY) bench/bench_evaluate.py
	$(PY) bench/bench_waves.py
	$(PY) bench/bench_confidence.py
	$(PY) bench/bench_prior.py
	$(PY) bench/bench_thinking.py
	$(PY) bench/bench_thinking_live.py
	$(PY) bench/bench_router_overhead.py
	$(PY) bench/bench_operator_scale.py
	$(PY) bench/bench_fleet.py
	$(PY) bench/bench_demand_learning.py --dataset llama2
	$(PY) bench/bench_demand_learning.py

# The cost report at scale (30 days x 1,000 services), apart from `bench`: building its
# Prometheus TSDB streams about 65 GB of OpenMetrics through promtool (up to ~7 GB of disk
# at once) and took about 22 minutes on two cores before the timed part starts.
.PHONY: bench-cost
bench-cost: setup
	$(PY) bench/bench_cost_report.py

# The simulator against the live stack: the demo's trace slice through `make demo`'s closed
# loop (about six minutes, CPU heavy) and through the simulator set up the same way.
.PHONY: bench-crosscheck
bench-crosscheck: setup
	$(PY) bench/bench_sim_vs_live.py

# Overload soak: twice the router's sustainable rate for a few minutes (at most ten in all).
soak: setup
	$(PY) bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
