"""The README stays in step with the code it documents."""

from pathlib import Path

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
