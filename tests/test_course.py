"""The course helpers: chapter parameters checked in one line before work starts,
explicit values winning over SMOKE, committed summaries read back only for the same
experiment, and exercise checks that say "correct" or what is off."""

import pathlib

import pandas as pd
import pytest
import torch

import dalv
from dalv import course
from dalv.course import ParameterError, check_exercise, settings

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_explicit_parameters_win_over_smoke():
    s = settings("04", SMOKE=True, K=5)
    assert s.K == 5 and s.DATASET == "digits" and s.SEEDS == [0]  # K given, rest SMOKE
    t = settings("04", K=None)
    assert t.K == 10 and t.DATASET == "mnist5k" and t.SEEDS == [0, 1, 2, 3, 4]
    assert settings("04", SMOKE=True, DATASET="mnist5k").DATASET == "mnist5k"


@pytest.mark.parametrize(
    "given, pattern",
    [
        ({"SMOKE": "no"}, r"^SMOKE must be True or False; got 'no' \(str\)"),
        (
            {"SMOKE": True, "DATASET": "mnist6k"},
            r"DATASET must be a str from .*'mnist5k'"
            r".*got 'mnist6k' \(did you mean 'mnist5k'\?\)",
        ),
        (
            {"VERIFIER": "gurobi"},
            r"VERIFIER must be a str from 'milp', 'lirpa', "
            r"'marabou'; got 'gurobi'",
        ),
        ({"K": 0}, r"K must be an int >= 1; got 0"),
        ({"K": True}, r"K must be an int >= 1; got True \(bool\)"),
        ({"SEEDS": "[0, x]"}, r"SEEDS must be a list of ints >= 0, e\.g\. \[0, 1\]"),
        ({"SEEDS": [0, -1]}, r"SEEDS\[1\] must be a list of ints >= 0; got -1"),
        ({"SEEDS": [1, 1]}, r"SEEDS lists a value twice"),
        ({"CYCLE": 3}, r"chapter 04 has no parameter CYCLE; its parameters are SMOKE"),
    ],
)
def test_bad_parameters_get_one_clear_line(given, pattern):
    with pytest.raises(ParameterError, match=pattern) as e:
        settings("04", **given)
    assert "\n" not in str(e.value)
    assert e.value._render_traceback_() == [f"ParameterError: {e.value}"]


def test_a_list_given_as_text_is_read():
    assert settings("04", SEEDS="[0, 1]").SEEDS == [0, 1]  # papermill -p SEEDS "[0, 1]"
    assert settings("04", SEEDS=3).SEEDS == [3]
    assert settings("01", METHODS="BADGE").METHODS == ["BADGE"]


def test_every_chapter_declares_exactly_its_parameters():
    """The parameters cells and course.CHAPTERS agree: papermill lists all."""
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    for chapter, spec in course.CHAPTERS.items():
        path = next((ROOT / "notebooks").glob(f"{chapter}_*.ipynb"))
        params = _infer_parameters(load_notebook_node(str(path)))
        assert [p.name for p in params] == list(spec), path.name
        assert all(p.inferred_type_name != "None" for p in params), path.name
        assert all(p.help for p in params), path.name


def test_committed_summaries_are_read_back_only_for_their_experiment():
    from dalv.reproduce import PRESETS

    cfg = PRESETS["baselines"].config
    got = course.committed("baselines", cfg, ["Random", "BADGE"], [0, 1])
    assert got.table is not None and not got.stale
    assert set(got.table["method"]) == {"Random", "BADGE"}
    assert set(got.table["seed"]) == {0, 1} and got.table["cycle"].max() == 19
    fewer = course.committed("baselines", cfg.replace(n_cycles=5), ["Random"], [0])
    assert fewer.table["cycle"].max() == 4  # cycle t does not depend on later ones
    other = course.committed("baselines", cfg.replace(candidates=500), ["Random"], [0])
    assert other.table is None and "candidates (10000 there, 500 here)" in other.reason
    assert course.committed("baselines", cfg, ["Random"], [7]).table is None
    wider = cfg.replace(model=dalv.ModelConfig(hidden=128))
    assert course.committed("baselines", wider, ["Random"], [0]).table is None


def test_a_changed_method_definition_is_flagged(tmp_path, monkeypatch):
    from dalv.reproduce import PRESETS

    cfg = PRESETS["baselines"].config
    folder = tmp_path / "reports" / "baselines"
    folder.mkdir(parents=True)
    src = ROOT / "reports" / "baselines"
    (folder / "config.json").write_text((src / "config.json").read_text())
    t = pd.read_csv(src / "results.csv")
    t.loc[t["method"] == "BADGE", "config_hash"] = "000000000000"
    t.to_csv(folder / "results.csv", index=False)
    monkeypatch.setattr(course, "_root", lambda: tmp_path)
    got = course.committed("baselines", cfg, ["Random", "BADGE"], [0])
    assert got.stale == ("BADGE",) and "earlier definition" in got.note()


def test_the_recompute_estimate_comes_from_the_committed_timings():
    guess = course.estimate_seconds("baselines", "mnist5k", ["Random"], [0, 1], 20)
    t = pd.read_csv(ROOT / "reports" / "baselines" / "results.csv")
    r = t[t["method"] == "Random"]
    per_run = r[["query_s", "augment_s", "train_s", "eval_s"]].to_numpy().sum() / 3
    assert guess == pytest.approx(2 * per_run)
    assert course.estimate_seconds("baselines", "digits", ["Random"], [0], 20) is None
    assert "expect about" in course.announce(guess, "x")


@pytest.fixture(scope="module")
def baselines():
    return pd.read_csv(ROOT / "reports" / "baselines" / "results.csv")


def test_exercise_01_checks(baselines, capsys):
    run = baselines[(baselines.method == "Random") & (baselines.seed == 0)]
    acc = run.sort_values("cycle")["test_acc"].to_numpy()
    by_hand = ((acc[:-1] + acc[1:]) / 2).sum() / (len(acc) - 1)
    assert check_exercise("01.1", by_hand, table=baselines)
    assert capsys.readouterr().out.strip() == "01.1: correct"
    wrong = check_exercise("01.1", acc.mean(), table=baselines)
    assert not wrong and "plain mean" in wrong.message
    wins = dalv.metrics.paired_wins(baselines, "BADGE", "Random")["wins"]
    assert check_exercise("01.2", int(wins), table=baselines)
    assert not check_exercise("01.2", int(wins) + 1, table=baselines)
    assert not check_exercise("01.2", float(wins), table=baselines)


def test_exercise_02_checks(trained_mlp, digits):
    x = digits.x_test[:60]
    with torch.no_grad():
        pred = trained_mlp(x).argmax(1)
        adv = dalv.attacks.fgsm(trained_mlp, x, 0.05)
        frac = float((trained_mlp(adv).argmax(1) != pred).float().mean())
    assert check_exercise("02.1", frac, model=trained_mlp, x=x)
    pct = check_exercise("02.1", 100 * frac + 1e-9, model=trained_mlp, x=x)
    assert not pct and ("percentage" in pct.message or frac == 0)

    def targeted(model, x, eps, target):
        x = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x), target, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
        return (x - eps * g.sign()).clamp(0, 1).detach()

    def uphill(model, x, eps, target):
        return targeted(model, x, -eps, target)

    assert check_exercise("02.2", targeted)
    up = check_exercise("02.2", uphill)
    assert not up and "up the target's loss" in up.message
    assert not check_exercise("02.2", 3)


def test_exercise_03_checks(trained_mlp, digits):
    x = digits.x_test[:1]
    lo, hi = dalv.verify.interval_bounds(trained_mlp, x, 0.01)
    pred = int(trained_mlp(x).argmax(1))
    others = [j for j in range(10) if j != pred]
    certified = bool(all(lo[0, pred] > hi[0, j] for j in others))
    assert check_exercise("03.1", certified, model=trained_mlp, x=x)
    assert not check_exercise("03.1", not certified, model=trained_mlp, x=x)
    r = float(dalv.verify.certified_radius(trained_mlp, x, method="IBP")[0])
    assert check_exercise("03.2", r, model=trained_mlp, x=x)
    assert (
        "too large" in check_exercise("03.2", r + 0.05, model=trained_mlp, x=x).message
    )


def test_exercise_04_checks():
    t = pd.read_csv(ROOT / "reports" / "mnist5k" / "results.csv")
    d = dalv.metrics.paired_wins(t, "FVAAL", "FVAAL+FGSM-Adv(10)")["mean_delta"]
    assert check_exercise("04.1", d, table=t)
    flipped = check_exercise("04.1", -d, table=t)
    assert not flipped and "sign" in flipped.message
    wins = dalv.metrics.paired_wins(t, "FVAAL", "FVAAL+PGD-Adv(10)")["wins"]
    assert check_exercise("04.2", int(wins), table=t)


def test_unknown_exercises_and_missing_objects_say_what_to_pass():
    with pytest.raises(ParameterError, match="no exercise '09.1'; the checks are 01.1"):
        check_exercise("09.1", 0)
    with pytest.raises(ParameterError, match="exercise 01.1 checks .*table="):
        check_exercise("01.1", 0.5)


def test_binder_builds_from_the_projects_environment():
    import yaml

    def pip(path):
        env = yaml.safe_load(path.read_text())
        return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))

    ours, binder = (
        pip(ROOT / "environment.yml"),
        pip(ROOT / "binder" / "environment.yml"),
    )
    assert [r for r in binder if not r.startswith("--")] == ours  # same list, same pins
    assert any(r.startswith("--extra-index-url") and "cpu" in r for r in binder)
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "--no-deps auto-lirpa==0.3" in post and "--no-deps -e ." in post
    assert (ROOT / "binder" / "postBuild").stat().st_mode & 0o100  # executable


def test_every_chapter_states_a_time_the_site_build_can_measure_against():
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location(
        "site", ROOT / "docs" / "build_site.py"
    )
    site = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(site)
    for chapter in course.CHAPTERS:
        path = next((ROOT / "notebooks").glob(f"{chapter}_*.ipynb"))
        stated = site.stated_seconds(nbformat.read(path, as_version=4))
        assert stated is not None and 0 < stated <= 180, path.name  # <= 3 min


def test_the_workshop_kit_links_what_it_names():
    text = (ROOT / "docs" / "workshop.md").read_text()
    for chapter in ("01", "02", "03", "04", "05"):
        assert f"### {chapter} ·" in text
    for name in course.EXERCISES:
        n = name.split(".")[0]
        assert f"## {name}" in (ROOT / "docs" / "solutions" / f"{n}.md").read_text()
    for nb in (ROOT / "notebooks").glob("0[1-4]_*.py"):  # solutions stay out of them
        assert "docs/solutions" in nb.read_text()
        assert "_fgsm_targeted" not in nb.read_text()
    assert "TIMINGS_TABLE" not in text, "fill the measured timings in"
