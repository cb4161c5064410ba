"""`estampille init DIR`: a commented brand.yaml, a calendar template and the competitor folder from
a few answers (options or questions); the result passes validation and `estampille run` runs it as it is."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from estampille.brand import load_brand
from estampille.cli import app, main


def test_init_writes_a_brand_that_runs_with_no_edit(tmp_path, fake_llm, capsys):
    folder = tmp_path / "cafe-lumiere"
    assert (
        main(
            [
                "init",
                str(folder),
                "--name",
                "Café Lumière",
                "--language",
                "fr,en",
                "--platform",
                "instagram",
                "--platform",
                "linkedin",
                "--timezone",
                "Europe/Paris",
                "--licence-policy",
                "commercial",
                "--no-ask",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Café Lumière: fr, en on instagram, linkedin, Europe/Paris, commercial; 2 weekly posts" in out
    brand_text = (folder / "brand.yaml").read_text(encoding="utf-8")
    assert brand_text.count("\n#") >= 10 and "# TODO" in brand_text  # commented, with what to change
    brand = yaml.safe_load(brand_text)
    assert brand["name"] == "Café Lumière" and brand["languages"] == ["fr", "en"]
    assert set(brand["disclosure"]["lines"]) == {"fr", "en"}
    calendar = (folder / "calendar.csv").read_bytes()
    assert calendar.startswith(b"\xef\xbb\xbfDate;Time;Platform;Language;Audience;Brief")  # Excel-ready, French
    assert (folder / "competitors" / "README.txt").is_file()

    # Validation, then the weekly batch of this week (the template's rows are weekly), untouched.
    bundle = load_brand(folder)
    assert [r.platform for r in bundle.calendar.recurring] == ["instagram", "linkedin"]
    assert main(["run", "--brand", str(folder), "--engine", "plain"]) == 0
    out = capsys.readouterr().out
    assert "render: 4 new, 0 already done" in out and "sign: 4 new" in out
    assert "Review page:" in out


def test_init_asks_the_questions_that_matter_on_a_terminal(tmp_path):
    folder = tmp_path / "new-brand"
    answers = "Café Lumière\nfr\ninstagram, x\nAmerica/Montreal\nnon-commercial\nhttps://cafe-lumiere.example\n"
    result = CliRunner().invoke(app, ["init", str(folder), "--ask"], input=answers)
    assert result.exit_code == 0, result.output
    assert "Brand name [New Brand]:" in result.output and "Time zone [Europe/Paris]:" in result.output
    bundle = load_brand(folder)
    brand = bundle.brand
    assert (brand.name, brand.languages, list(brand.platforms), brand.timezone, brand.licence_policy) == (
        "Café Lumière",
        ["fr"],
        ["instagram", "x"],
        "America/Montreal",
        "non-commercial",
    )
    assert brand.rights.web_statement == "https://cafe-lumiere.example/image-rights"
    assert brand.website == "https://cafe-lumiere.example"


def test_init_refuses_bad_answers_and_an_existing_brand_without_writing(tmp_path, capsys):
    folder = tmp_path / "brand"
    assert main(["init", str(folder), "--timezone", "Paris", "--no-ask"]) == 2
    assert "--timezone 'Paris' is not an IANA time zone" in capsys.readouterr().err
    assert main(["init", str(folder), "--platform", "myspace", "--no-ask"]) == 2
    assert "--platform: myspace: choose among instagram" in capsys.readouterr().err
    assert not folder.exists()  # nothing written
    assert main(["init", str(folder), "--no-ask"]) == 0
    before = (folder / "brand.yaml").read_bytes()
    assert main(["init", str(folder), "--name", "Other", "--no-ask"]) == 2
    assert (
        "brand.yaml exists: `estampille init` makes a new brand folder and never overwrites one"
        in capsys.readouterr().err
    )
    assert (folder / "brand.yaml").read_bytes() == before
