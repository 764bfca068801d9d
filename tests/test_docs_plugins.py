"""docs/plugins.md is a tutorial that cannot rot: every code block on it runs, and every hook and public
interface is named on it.

How the page is run (in document order, in an empty temporary directory, one namespace for the page):

- ```python blocks are executed;
- a ```text block marked `<!-- output -->` must match what the Python block before it printed;
- ```console blocks: each `$ COMMAND` runs (`qcsurrogate ...` in-process through `qcsurrogate.cli.main`,
  `python -m pytest ...` in a subprocess with this checkout on PYTHONPATH, `cd DIR` in the test); the lines
  shown below a command must match lines of its output, in order (`...` inside a line stands for
  anything; a line that is only `...` stands for any lines);
- a block marked `<!-- excerpt: FILE -->` must occur verbatim in FILE (relative to the working directory);
- a block marked `<!-- write: FILE -->` is written to FILE for the commands after it;
- a block marked `<!-- not-run: REASON -->` is skipped: only the blocks in `NOT_RUN` may be, and each of
  them must be there (CI's `make scaffold-check` does the installation for real).

Any other block (an unmarked yaml or text block, an unknown command) fails the test.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import shlex
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import qcsurrogate
from qcsurrogate import System, hookspecs, testing
from qcsurrogate.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"

NOT_RUN = {
    'pip install -e "qcsurrogate-chain-demo[test]"':
        "installs into the environment, from the network; make scaffold-check installs a scaffolded plugin in CI",
}
"""The first command of each block the page may leave unexecuted, with why. Keep it short."""

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not-run|excerpt|write|output)\s*(?::\s*(?P<arg>.*?))?\s*-->\s*$")


@dataclass
class Block:
    lang: str
    text: str
    line: int
    """1-based line of the opening fence."""
    marker: str | None
    arg: str | None

    @property
    def where(self) -> str:
        return f"docs/plugins.md:{self.line}"


def parse_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, start = m["indent"], i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        mk = MARKER.match(lines[start - 1]) if start > 0 else None
        blocks.append(Block(m["lang"] or "text", "\n".join(body) + "\n", start + 1,
                            mk["kind"] if mk else None, mk["arg"] if mk else None))
        i += 1
    return blocks


# -- matching output ------------------------------------------------------------------------------------


def _line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("...")))


def assert_output_matches(expected: str, actual: str, where: str) -> None:
    """Each expected line matches (fully, `...` as a wildcard) a later line of `actual`; a line `...` skips."""
    got = [line.rstrip() for line in actual.splitlines()]
    pos = 0
    for want in (w.rstrip() for w in expected.splitlines()):
        if want.strip() in ("", "..."):
            continue
        pattern = _line_pattern(want)
        while pos < len(got) and not pattern.fullmatch(got[pos]):
            pos += 1
        if pos == len(got):
            raise AssertionError(f"{where}: expected output line not found (in order):\n  {want}\n"
                                 f"actual output:\n{actual}")
        pos += 1


# -- running the page ---------------------------------------------------------------------------------------


class Page:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        # A real module, so classes defined on the page resolve their annotations (pydantic looks the
        # class's module up in sys.modules); the fixture removes it afterwards.
        module = types.ModuleType("docs_plugins")
        sys.modules[module.__name__] = module
        self.ns: dict[str, object] = module.__dict__
        self.last_output: str | None = None
        self.not_run: list[str] = []
        self.ran = 0

    def run(self, block: Block) -> None:
        if block.marker == "not-run":
            assert block.arg, f"{block.where}: a not-run marker needs a reason"
            self.not_run.append(block.text.strip().splitlines()[0].removeprefix("$ ").strip())
            return
        if block.marker == "excerpt":
            path = Path(block.arg or "")
            assert path.is_file(), f"{block.where}: excerpt source {path} does not exist"
            assert block.text in path.read_text(), f"{block.where}: this block is not verbatim in {path}:\n{block.text}"
        elif block.marker == "write":
            Path(block.arg or "").parent.mkdir(parents=True, exist_ok=True)
            Path(block.arg or "").write_text(block.text)
        elif block.marker == "output":
            assert self.last_output is not None, f"{block.where}: an output block needs a Python block before it"
            assert_output_matches(block.text, self.last_output, block.where)
            self.last_output = None
        elif block.lang == "python":
            self.capsys.readouterr()
            code = compile("\n" * block.line + block.text, str(DOC), "exec")  # tracebacks name the page line
            exec(code, self.ns)  # noqa: S102 - the page's own code
            self.last_output = self.capsys.readouterr().out
        elif block.lang == "console":
            self.console(block)
        else:
            raise AssertionError(f"{block.where}: a ```{block.lang} block that is neither run nor marked "
                                 "(excerpt, write, output, not-run)")
        self.ran += 1

    def console(self, block: Block) -> None:
        commands: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                assert commands, f"{block.where}: output before the first `$ ` command"
                commands[-1][1].append(line)
        assert commands, f"{block.where}: a console block without a `$ ` command"
        for command, expected in commands:
            where = f"{block.where} `{command}`"
            argv = shlex.split(command, comments=True)
            if argv[0] == "cd":
                os.chdir(argv[1])
                continue
            if argv[0] == "qcsurrogate":
                self.capsys.readouterr()
                code = main(argv[1:])
                out, err = self.capsys.readouterr()
                assert code == 0, f"{where}: exit status {code}\n{out}\n{err}"
                output = out + err
            elif argv[:3] == ["python", "-m", "pytest"]:
                path = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
                env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(path)}
                proc = subprocess.run([sys.executable, *argv[1:], "-p", "no:cacheprovider"], env=env,
                                      capture_output=True, text=True, timeout=600)
                output = proc.stdout + proc.stderr
                assert proc.returncode == 0, f"{where}: exit status {proc.returncode}\n{output}"
            else:
                raise AssertionError(f"{where}: the test does not know how to run this; run it through "
                                     "qcsurrogate or mark the block <!-- not-run: REASON -->")
            assert_output_matches("\n".join(expected), output, where)


@pytest.fixture
def page_env(tmp_path, monkeypatch, clean_registry):
    """An empty working directory; sys.path, sys.modules and the registry put back afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        for name in set(sys.modules) - before:
            if name.split(".")[0] in ("qcsurrogate_chain_demo",) or name == "docs_plugins":
                del sys.modules[name]


def test_the_tutorial_runs(page_env, capsys):
    blocks = parse_blocks(DOC.read_text())
    page = Page(capsys)
    for block in blocks:
        page.run(block)
    print(f"ran {page.ran} blocks of {len(blocks)}")
    assert sorted(page.not_run) == sorted(NOT_RUN), (
        f"blocks left unexecuted: {page.not_run}; only {sorted(NOT_RUN)} may be (and must be) marked not-run")
    assert page.ran + len(page.not_run) == len(blocks)


def test_the_parser_sees_every_fence():
    """Fences come in pairs, and every block is one the page runner handles."""
    text = DOC.read_text()
    fences = sum(1 for line in text.splitlines() if line.strip().startswith("```"))
    blocks = parse_blocks(text)
    assert fences == 2 * len(blocks)
    assert {b.lang for b in blocks} <= {"python", "console", "text", "yaml", "toml"}
    unmarked = [b.where for b in blocks if b.marker is None and b.lang not in ("python", "console")]
    assert not unmarked, f"blocks that would not be run: {unmarked}"


def test_output_matching():
    assert_output_matches("a\n...\nc ... e", "a\nb\nc d e\n", "t")
    with pytest.raises(AssertionError, match="not found"):
        assert_output_matches("c\na", "a\nc\n", "t")


# -- every hook and public interface is documented --------------------------------------------------------

ALLOWED_UNDOCUMENTED: dict[str, str] = {
    "System.params": "not a class member: the instance attribute set by __init__ (documented as `self.params`)",
}
"""Public names the coverage test does not demand on the page, each with the reason. Keep it short."""


def _code_text(doc: str) -> str:
    """Everything on the page that is code: fenced blocks and `inline code`."""
    blocks = "\n".join(b.text for b in parse_blocks(doc))
    prose = re.sub(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", "", doc, flags=re.MULTILINE | re.DOTALL)
    inline = "\n".join(re.findall(r"`([^`]+)`", prose))  # a code span may wrap onto the next line
    return blocks + "\n" + inline


def _named(name: str, code: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", code) is not None


def public_interface() -> dict[str, str]:
    """Qualified name -> the bare name that must appear on the page."""
    out: dict[str, str] = {}
    for name, obj in vars(hookspecs).items():
        if callable(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec"):
            out[f"hookspecs.{name}"] = name
    for name in qcsurrogate.__all__:
        out[f"qcsurrogate.{name}"] = name
    members = {n for n in dir(System) if not n.startswith("_")} | {
        n for n in System.__annotations__ if not n.startswith("_")}
    for name in members | {"params", "one_body_hamiltonian"}:  # the optional hook the kit looks up by name
        out[f"System.{name}"] = name
    for name, obj in vars(testing).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != testing.__name__:
            continue
        if inspect.isfunction(obj) and name.startswith("check_") and name != "check_system":
            out[f"testing.{name}"] = name.removeprefix("check_")  # documented as the check NAME = check_NAME
        else:
            out[f"testing.{name}"] = name
    for check in testing.CHECKS:
        out[f"testing.CHECKS[{check}]"] = check
    out["testing.ScenarioKwargs"] = "ScenarioKwargs"  # a type alias: no __module__ of its own
    out["cli.new-plugin"] = "new-plugin"
    return out


def test_every_hook_and_public_interface_is_documented():
    interface = public_interface()
    assert {"hookspecs.register_systems", "hookspecs.register_views", "hookspecs.register_surrogates",
            "System.orbitals", "System.vector_fields", "System.invariants", "System.rhs_real",
            "testing.parametrize_with_checks", "testing.check_system", "qcsurrogate.load_system"} <= set(interface)
    stale = sorted(set(ALLOWED_UNDOCUMENTED) - set(interface))
    assert not stale, f"ALLOWED_UNDOCUMENTED names what no longer exists: {stale}"
    code = _code_text(DOC.read_text())
    missing = sorted(q for q, name in interface.items() if q not in ALLOWED_UNDOCUMENTED and not _named(name, code))
    assert not missing, f"public interface not named in docs/plugins.md (document it, or allow-list it with a reason): {missing}"


def test_every_cli_command_is_in_cli_md():
    build_parser()  # registers the pipeline commands too
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [name for name in COMMANDS if f"`{name}" not in text and f"qcsurrogate {name}" not in text]
    assert not missing, f"commands not documented in docs/cli.md: {missing}"


def test_code_blocks_are_not_indented_inconsistently():
    """An indented block (inside a list item) is dedented by its fence's indentation only."""
    text = "- item\n\n  ```python\n  x = 1\n  if x:\n      y = 2\n  ```\n"
    (block,) = parse_blocks(text)
    assert block.text == textwrap.dedent("x = 1\nif x:\n    y = 2\n")
