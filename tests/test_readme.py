"""The README stays in step with the code it documents."""

from pathlib import Path

import pytest

from cascade.engine import COLUMNS
from cascade.model.scenario import SCHEMA

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_opens_with_the_two_setup_commands():
    block = README.split("```sh", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split()[:2] for line in block] == [["make", "run"], ["make", "test"]]


def test_every_scenario_key_is_documented():
    for section, fields in SCHEMA.items():
        for key in fields:
            assert f"| `{key}` |" in README, f"[{section}] {key} missing from README"


def test_every_step_column_is_documented():
    for col in COLUMNS:
        assert f"`{col}`" in README, col


# ------------------------------------------------------------- every ```sh example, as written
REPO = Path(__file__).resolve().parents[1]


def sh_commands() -> list[str]:
    """Every command line of the README's ```sh blocks (comments dropped, continuations
    joined)."""
    import re

    out = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def synopsis(line: str) -> tuple[list[str], list[list[str]]]:
    """(the tokens outside [brackets], each [optional group]'s tokens)."""
    import re
    import shlex

    groups = [shlex.split(g) for g in re.findall(r"\[([^\]]*)\]", line)]
    required = shlex.split(re.sub(r"\[[^\]]*\]", " ", line))
    return required, groups


def _cascade_argv(tokens: list[str]) -> list[str] | None:
    if tokens[:1] == ["cascade"]:
        return tokens[1:]
    if tokens[:3] == ["python", "-m", "cascade"] or tokens[:3] == ["python", "-m", "cascade.cli"]:
        return tokens[3:]
    return None


def _subparser(sub: str):
    import argparse

    from cascade.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sub in action.choices, f"README names an unknown command: cascade {sub}"
    return parser, action.choices[sub]


def test_readme_has_examples():
    cmds = [c for c in sh_commands() if _cascade_argv(synopsis(c)[0]) is not None]
    assert len(cmds) >= 3, sh_commands()


@pytest.mark.parametrize("line", sh_commands())
def test_readme_command_matches_the_cli(line):
    """Each README command names a real make target or subcommand; every option it shows (in
    [brackets] too) is one that subcommand's --help lists, and the command as written parses."""
    required, groups = synopsis(line)
    if required[0] == "make":
        makefile = (REPO / "Makefile").read_text()
        for target in required[1:]:
            if "=" not in target:
                assert f"\n{target}:" in makefile, f"make {target}: no such target"
        return
    argv = _cascade_argv(required)
    assert argv is not None, f"README example is not a cascade command: {line}"
    parser, sub = _subparser(argv[0])
    known = {s for a in sub._actions for s in a.option_strings}
    for tok in required + [t for g in groups for t in g]:
        if tok.startswith("--"):
            assert tok in known, f"{line}: cascade {argv[0]} has no option {tok}"
    parser.parse_args(argv)  # SystemExit (a failure) if the form as written does not parse
    help_text = sub.format_help()
    for g in groups:
        assert g[0] in help_text, f"{g[0]} missing from cascade {argv[0]} --help"


# options that bound the work of a documented command so the suite can run it: no population
# (every window still runs, each step), one sensitivity parameter, one seed
BOUNDS = {"--positions": "0", "--seeds": "1", "--params": "market.depth_usd"}


@pytest.mark.slow
@pytest.mark.parametrize("line", [c for c in sh_commands()
                                  if _cascade_argv(synopsis(c)[0]) is not None])
def test_readme_command_runs(line, tmp_path):
    """The README command as written (its required part), with the work bounded by BOUNDS and
    outputs in a temporary folder: exit 0 (1 only for validate, whose targets an empty market
    does not meet), no traceback. A command reading a file that is not in the repository (the
    user's own download of real candles) is checked by the test above only."""
    import subprocess
    import sys

    required, _ = synopsis(line)
    argv = _cascade_argv(required)
    files = [t for t in argv[1:] if not t.startswith("-") and "." in t]
    missing = [f for f in files if not (REPO / f).exists()]
    if missing:
        pytest.skip(f"needs the user's own file(s) {missing} (not in the repository)")
    _, sub = _subparser(argv[0])
    known = {s for a in sub._actions for s in a.option_strings}
    extra = [x for k, v in BOUNDS.items() if k in known and k not in argv for x in (k, v)]
    if "--out" in known and "--out" not in argv:
        extra += ["--out", str(tmp_path / "out")]
    if "--quiet" in known:
        extra.append("--quiet")
    r = subprocess.run([sys.executable, "-m", "cascade.cli", *argv, *extra], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0 or (argv[0] == "validate" and r.returncode == 1), (line, r.stderr)


def test_every_output_table_column_is_documented():
    from cascade.outputs import LIQUIDATION_COLUMNS, POSITION_COLUMNS

    for col in (*LIQUIDATION_COLUMNS, *POSITION_COLUMNS):
        assert f"| `{col}` |" in README, col
