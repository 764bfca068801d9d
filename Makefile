# One-command entry points; see README.md. Everything installs into ./.venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: venv test demo shallow wheels wheel-check bench mutation mutation-sample mutation-holstein mutation-report clean

$(BIN)/qcsurrogate: pyproject.toml plugins/holstein/pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e ".[dev]" -e plugins/holstein
	touch $@

venv: $(BIN)/qcsurrogate

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv
	$(BIN)/qcsurrogate run examples/holstein_deep.yaml

shallow: venv
	$(BIN)/qcsurrogate run examples/holstein_shallow.yaml

wheels: venv
	rm -rf dist && mkdir -p dist
	$(BIN)/python -m build --wheel --outdir dist .
	$(BIN)/python -m build --wheel --outdir dist plugins/holstein

# Install both wheels into a fresh venv the way a user would and smoke-test them.
wheel-check: wheels
	rm -rf build/wheel-venv
	$(PY) -m venv build/wheel-venv
	build/wheel-venv/bin/python -m pip install --quiet -c constraints.txt --find-links dist "qcsurrogate[holstein]"
	cd build && wheel-venv/bin/qcsurrogate plugins
	cd build && wheel-venv/bin/python -c "import qcsurrogate as q; s=q.load_system('holstein', L=4, g=0.5); print(q.simulate(s, s.initial_state('deep_quench', n_traj=2, seed=0), 0.08, 4))"

bench: venv
	$(BIN)/python benchmarks/bench_simulate.py
	$(BIN)/python benchmarks/bench_surrogate.py

# Mutation testing (docs/testing.md): too slow for every CI run. mutmut resumes where it stopped;
# `rm -rf mutants` starts afresh. Dynamo cannot trace mutmut's trampolines, so compile=True runs eagerly.
MUTMUT := $(BIN)/mutmut
MUTANTS ?= "qcsurrogate.solvers*" "qcsurrogate.state*" "qcsurrogate.io.*" "qcsurrogate.evaluation.*" \
           "qcsurrogate.surrogate.*" "qcsurrogate.training.*" "qcsurrogate.testing*"
JOBS ?= 2

$(MUTMUT): $(BIN)/qcsurrogate
	$(PIP) install --quiet -c constraints.txt "mutmut==3.8.1"

mutation: $(MUTMUT)
	TORCHDYNAMO_DISABLE=1 OMP_NUM_THREADS=1 $(MUTMUT) run --max-children $(JOBS) $(MUTANTS)
	$(BIN)/python benchmarks/mutation_report.py

mutation-holstein: $(MUTMUT)
	cd plugins/holstein && TORCHDYNAMO_DISABLE=1 OMP_NUM_THREADS=1 ../../$(MUTMUT) run --max-children $(JOBS)
	$(BIN)/python benchmarks/mutation_report.py --root plugins/holstein --targets qcsurrogate_holstein/

# A seeded sample of N mutants per target module, each run against the current tests (~25 min on 2 cores).
SAMPLE ?= 60
SEED ?= 1
mutation-sample: $(MUTMUT)
	$(BIN)/python benchmarks/mutation_sample.py --run --per-module $(SAMPLE) --seed $(SEED) --jobs $(JOBS) --output docs/mutation-sample.md

mutation-report: $(MUTMUT)
	$(BIN)/python benchmarks/mutation_report.py --check 0.9

clean:
	rm -rf $(VENV) dist build mutants plugins/holstein/mutants
