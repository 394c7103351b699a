"""The command line's parser (flows.cli.parser): help for every verb, argparse's own refusals."""

import pytest

from flows.cli.command import main


@pytest.mark.parametrize("argv", [[], ["run"], ["rerun"], ["serve"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--help"])
    assert exit_.value.code == 0
    assert "usage: vae-pipeline" in capsys.readouterr().out


def test_unknown_choice_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--estimators", "exact"])
    assert exit_.value.code == 2
    assert "invalid choice: 'exact'" in capsys.readouterr().err


def test_seeds_take_ranges_as_the_advice_prints_them():
    from flows.cli.parser import build_parser

    args = build_parser().parse_args(["run", "--seeds", "0-3", "7", "9-10"])
    assert args.seeds == [0, 1, 2, 3, 7, 9, 10]
    assert build_parser().parse_args(["run"]).seeds == [0, 1, 2]


@pytest.mark.parametrize("token, message", [
    ("3-x", "is not a seed or a range of seeds such as 0-9"), ("a", "is not a seed"),
    ("2-", "is not a seed"), ("9-0", "a range of seeds runs upward"),
    ("0-1000000000", "at most 10000 seeds")])
def test_a_seed_token_that_is_no_seed_is_refused(token, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--seeds", token])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
