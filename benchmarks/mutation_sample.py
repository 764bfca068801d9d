"""Estimate the mutation score from a seeded random sample of mutants per module.

A full `make mutation` run over ~5,000 mutants takes hours on 2 cores; a stratified sample of N
mutants per target module, all run against the current tests, gives each module's kill rate with a
95% Wilson interval in a fraction of that time, and the pooled score (each module weighted by its
number of mutants) with its own interval. Run from the repository root after `mutmut` has generated
the mutants once (`make mutation` or `make mutation-sample` does that):

    .venv/bin/python benchmarks/mutation_sample.py --per-module 60 --seed 0 --run --output docs/mutation-sample.md
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation_report import TARGETS, equivalents, is_target, load  # noqa: E402

Z95 = 1.959964
REFRESH = "qcsurrogate.state.xǁStateǁ__repr__*"
"""A handful of cheap mutants whose run refreshes ./mutants (see main)."""


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def all_mutants(root: Path) -> dict[str, list[str]]:
    """{source file: sorted mutant names} from mutmut's metadata."""
    return {src: sorted(muts) for src, muts in load(root).items()}


def statuses(root: Path) -> dict[str, str]:
    """{mutant name: status} over every mutated file."""
    return {name: status for muts in load(root).values() for name, status in muts.items()}


def draw(mutants: dict[str, list[str]], per_module: int, seed: int, targets: tuple[str, ...]) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {src: sorted(rng.sample(names, min(per_module, len(names))))
            for src, names in mutants.items() if names and is_target(src, targets)}


def run_mutmut(names: list[str], jobs: int, mutmut: str) -> int:
    env = {**os.environ, "TORCHDYNAMO_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.call([mutmut, "run", "--max-children", str(jobs), *names], env=env)


def report(sample: dict[str, list[str]], population: dict[str, list[str]], status: dict[str, str],
           equiv: dict[str, str], seed: int) -> str:
    rows = [f"Sample: up to {max(len(v) for v in sample.values())} mutants per module, seed {seed}; "
            "every sampled mutant run against the current tests.", "",
            "| module | mutants | sampled | killed | timeout | survived | equivalent | no tests | not run or hung | score (95% CI) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    pooled_k = pooled_var = total = 0.0
    survivors = []
    for src, names in sample.items():
        c = Counter(status.get(n, "not checked") for n in names)
        eq = sum(1 for n in names if status.get(n) == "survived" and n in equiv)
        survivors += [(src, n) for n in names if status.get(n) in ("survived", "no tests") and n not in equiv]
        k = c["killed"] + c["timeout"]
        n = k + c["survived"] + c["no tests"] - eq
        lo, hi = wilson(k, n)
        N = len(population[src])
        if n:
            p = k / n
            pooled_k += N * p
            pooled_var += N * N * p * (1 - p) / n
            total += N
        rows.append(f"| `{src}` | {N} | {len(names)} | {c['killed']} | {c['timeout']} | {c['survived']} | {eq} | "
                    f"{c['no tests']} | {len(names) - k - c['survived'] - c['no tests']} | {100 * k / n if n else float('nan'):.0f}% "
                    f"({100 * lo:.0f}-{100 * hi:.0f}%) |")
    if total:
        p = pooled_k / total
        se = math.sqrt(pooled_var) / total
        rows.append(f"| **all target modules (weighted by mutants)** | {int(total)} | {sum(map(len, sample.values()))} "
                    f"| | | | | | | **{100 * p:.1f}%** ({100 * max(0, p - Z95 * se):.1f}-{100 * min(1, p + Z95 * se):.1f}%) |")
    rows += ["", f"Surviving sampled mutants not judged equivalent: {len(survivors)}", ""]
    rows += [f"- `{n}`" for _, n in survivors]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-module", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--run", action="store_true", help="run mutmut on the sample first (else report stored results)")
    ap.add_argument("--mutmut", default=str(Path(sys.executable).with_name("mutmut")))
    ap.add_argument("--equivalents", type=Path, default=Path("tests/mutation_equivalent.toml"))
    ap.add_argument("--targets", nargs="+", default=list(TARGETS))
    ap.add_argument("--output", type=Path)
    args = ap.parse_args(argv)
    root = Path(".")
    if args.run:
        # mutmut (re)generates the mutants of every changed file and re-collects which tests cover what
        # before it runs any mutant: a run of a few cheap ones brings ./mutants up to date, so the sample
        # is drawn from the current code's mutants
        run_mutmut([REFRESH], args.jobs, args.mutmut)
    population = all_mutants(root)
    if not population:
        print("no mutants under ./mutants: run with --run (or `make mutation-sample`)", file=sys.stderr)
        return 2
    sample = draw(population, args.per_module, args.seed, tuple(args.targets))
    if args.run:
        run_mutmut([n for names in sample.values() for n in names], args.jobs, args.mutmut)
    text = report(sample, population, statuses(root), equivalents(args.equivalents), args.seed)
    if args.output:
        args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
