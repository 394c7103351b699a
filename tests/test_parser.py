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
