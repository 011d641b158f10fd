"""`vfbench options [NAME]`: every entry's options with defaults, from the declarations that check
a campaign at start-up."""

import pytest

from vfbench.cli import main
from vfbench.verify.options import METHOD_OPTIONS


def test_every_verifier_option_is_listed_with_default_allowed_values_and_help(capsys):
    assert main(["options"]) == 0
    out = capsys.readouterr().out
    for title in ("verifiers", "losses", "transforms", "architectures", "tables", "plots"):
        assert f"\n{title} (" in f"\n{out}", title
    for method, options in METHOD_OPTIONS.items():
        assert f"\n  {method}: " in out
        for name, option in options.items():
            assert f"    {name} = " in out and option.help in out


def test_one_name(capsys):
    assert main(["options", "bab"]) == 0
    out = capsys.readouterr().out
    assert "branching = 'babsr'  [one of ['babsr', 'fsb', 'width']]" in out
    assert "domain_batch = 64  [an integer >= 1 or 'auto']" in out
    assert "milp" not in out and "losses" not in out
    assert main(["options", "nbc"]) == 0
    assert "layer_weights = 'pow2_rank'" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["kfsb", "babb"])
def test_an_unknown_name_is_an_error(capsys, name):
    assert main(["options", name]) == 1
    assert f"called {name!r}; known: [" in capsys.readouterr().err
