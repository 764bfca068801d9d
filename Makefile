# One-command entry points; see README.md. Everything installs into ./.venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: venv test demo shallow ssh-soliton sd-spiral wheels wheel-check scaffold-check ssh-fresh bench mutation mutation-sample mutation-holstein mutation-report clean

$(BIN)/qcsurrogate: pyproject.toml plugins/holstein/pyproject.toml plugins/ssh/pyproject.toml plugins/sd/pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e ".[dev]" -e plugins/holstein -e plugins/ssh -e plugins/sd
	touch $@

venv: $(BIN)/qcsurrogate

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv
	$(BIN)/qcsurrogate run examples/holstein_deep.yaml

shallow: venv
	$(BIN)/qcsurrogate run examples/holstein_shallow.yaml

ssh-soliton: venv
	$(BIN)/qcsurrogate run examples/ssh_soliton.yaml

sd-spiral: venv
	$(BIN)/qcsurrogate run examples/sd_spiral.yaml

wheels: venv
	rm -rf dist && mkdir -p dist
	$(BIN)/python -m build --wheel --outdir dist .
	$(BIN)/python -m build --wheel --outdir dist plugins/holstein
	$(BIN)/python -m build --wheel --outdir dist plugins/ssh
	$(BIN)/python -m build --wheel --outdir dist plugins/sd

# Install the wheels into fresh venvs the way a user would and smoke-test them: core + Holstein + s-d, and
# core + SSH alone (a plugin must not need another one).
wheel-check: wheels
	rm -rf build/wheel-venv
	$(PY) -m venv build/wheel-venv
	build/wheel-venv/bin/python -m pip install --quiet -c constraints.txt --find-links dist "qcsurrogate[holstein,sd]"
	cd build && wheel-venv/bin/qcsurrogate plugins
	cd build && wheel-venv/bin/python -c "import qcsurrogate as q; s=q.load_system('holstein', L=4, g=0.5); print(q.simulate(s, s.initial_state('deep_quench', n_traj=2, seed=0), 0.08, 4))"
	cd build && wheel-venv/bin/python -c "import qcsurrogate as q; s=q.load_system('sd_chain', L=6); print(q.simulate(s, s.initial_state('random_spins', n_traj=2, seed=0), 0.05, 4))"
	rm -rf build/wheel-venv-ssh
	$(PY) -m venv build/wheel-venv-ssh
	build/wheel-venv-ssh/bin/python -m pip install --quiet -c constraints.txt --find-links dist "qcsurrogate[ssh]"
	cd build && wheel-venv-ssh/bin/qcsurrogate plugins
	cd build && wheel-venv-ssh/bin/python -c "import qcsurrogate as q; s=q.load_system('ssh_chain', L=9, alpha=1.5); print(q.simulate(s, s.initial_state('solitons', xi=1.0, velocity=0.1), 0.05, 4))"

# A plugin made by `qcsurrogate new-plugin` works as a user gets it: scaffolded by the CLI installed from
# the wheels, pip-installed into that venv (core + Holstein), listed by `qcsurrogate plugins`, and its own
# tests (the conformance kit) and example run pass. About a minute after wheel-check.
SCAFFOLD_VENV ?= build/wheel-venv
scaffold-check: wheel-check
	rm -rf build/scaffold && mkdir -p build/scaffold
	cd build/scaffold && $(abspath $(SCAFFOLD_VENV))/bin/qcsurrogate new-plugin scaffold-check
	$(SCAFFOLD_VENV)/bin/python -m pip install --quiet -c constraints.txt --find-links dist "./build/scaffold/qcsurrogate-scaffold-check[test]"
	cd build/scaffold && $(abspath $(SCAFFOLD_VENV))/bin/qcsurrogate plugins > plugins.txt && cat plugins.txt
	grep -q "^scaffold_check 0.1.0$$" build/scaffold/plugins.txt && grep -q "^  system scaffold_check: " build/scaffold/plugins.txt
	cd build/scaffold/qcsurrogate-scaffold-check && OMP_NUM_THREADS=1 $(abspath $(SCAFFOLD_VENV))/bin/python -m pytest -q -p no:cacheprovider
	cd build/scaffold/qcsurrogate-scaffold-check && OMP_NUM_THREADS=1 $(abspath $(SCAFFOLD_VENV))/bin/qcsurrogate run example.yaml

# The SSH plugin's acceptance check (~5 min, not part of CI): a fresh venv with only the core and the SSH
# plugin, installed from the wheels, runs the shipped example end to end.
ssh-fresh: wheel-check
	build/wheel-venv-ssh/bin/qcsurrogate run examples/ssh_soliton.yaml -o build/ssh_soliton

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
