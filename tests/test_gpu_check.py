"""benchmarks/gpu_check.py: its CPU mode end to end (tiny sizes), its helpers, and the
device checks it runs on a GPU (marked ``cuda``; each also runs on the CPU here, so the
check itself is tested where there is no GPU)."""

import csv
import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dalv
from dalv.config import ExperimentConfig, ModelConfig, TrainConfig
from dalv.verify import (
    Budget,
    LirpaVerifier,
    Property,
    bounds,
    certified_radius,
    recheck,
)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


gc = _load_script()

CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ],
)
DEVICES = ["cpu", CUDA]


# ---------------------------------------------------------------- the CPU-mode run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One CPU-mode run of the script at tiny sizes (``--no-cuda``: CPU mode on any
    machine)."""
    out = tmp_path_factory.mktemp("gpu")
    cmd = [sys.executable, str(SCRIPT), "--size", "tiny", "--no-cuda"]
    cmd += ["--threads", "1", "--out", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return r, out


EXPECTED_STEPS = [
    "CUDA tests (pytest -m cuda)",
    "bounds IBP, MLP-8",
    "bounds CROWN, MLP-8",
    "bounds alpha-CROWN, MLP-8",
    "certified_radius (CROWN), MLP-8",
    "LirpaVerifier.find_batch, MLP-8",
    "bounds IBP, CNN (2 conv)",
    "bounds CROWN, CNN (2 conv)",
    "cycle FVAAL [milp]",
    "cycle FVAAL [lirpa]",
    "cycle Random+FV-Adv(10) [milp]",
    "cycle Random+FV-Adv(10) [lirpa]",
]


def test_cpu_mode_exits_0_and_says_no_gpu(tiny_run):
    r, out = tiny_run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert gc.NO_GPU in r.stdout
    text = (out / "gpu.txt").read_text()
    assert gc.NO_GPU in text
    assert "torch" in text and "CPU threads (torch)" in text
    assert "MILP" in text  # FV-Adv's default verifier is said to be CPU-only
    assert "in progress" not in text and "Total" in text
    assert str(out) not in text  # no machine path in the report


def test_cpu_mode_csv_has_every_step_with_cuda_not_run(tiny_run):
    _, out = tiny_run
    with open(out / "gpu.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == gc.CSV_COLUMNS
        rows = list(reader)
    assert [row["step"] for row in rows] == EXPECTED_STEPS
    for row in rows:
        assert row["cuda_s"] == "not run" and row["cpu_over_cuda"] == ""
        assert row["cuda_peak_mib"] == ""
        assert row["status"] != "failed", row
    for row in rows[1:]:
        assert float(row["cpu_s"]) > 0 and row["status"] == "cpu only (no GPU)"
    tests = rows[0]
    assert tests["status"] == "skipped (no GPU)"
    assert "0 passed, 0 failed" in tests["note"]
    # every test marked cuda was found (this file's own, on the CUDA parameter, too)
    n = int(tests["note"].split(" skipped of ")[1].split()[0])
    assert n >= 2 + 7


def test_cpu_mode_table_lists_every_step(tiny_run):
    _, out = tiny_run
    lines = (out / "gpu.txt").read_text().splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("step "))
    assert "CPU/CUDA" in lines[head] and "GPU peak MiB" in lines[head]
    table = lines[head + 1 : head + 1 + len(EXPECTED_STEPS)]
    assert [line.split("  ")[0] for line in table] == EXPECTED_STEPS
    assert all("not run" in line for line in table)


def test_a_failing_step_is_recorded_and_the_exit_code_says_so(tmp_path, monkeypatch):
    def boom(setting):
        raise RuntimeError("planted failure\nsecond line")

    monkeypatch.setitem(gc.STEP_FUNCS, "radius", boom)
    threads = torch.get_num_threads()
    try:
        rc = gc.main(
            ["--size", "tiny", "--no-cuda", "--threads", "1", "--out", str(tmp_path)]
            + ["--only", "radius", "search"]
        )
    finally:
        torch.set_num_threads(threads)
    assert rc == 1
    with open(tmp_path / "gpu.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["failed", "cpu only (no GPU)"]
    assert rows[0]["note"] == "cpu: RuntimeError: planted failure"
    assert "1 failed: radius." in (tmp_path / "gpu.txt").read_text()


# ---------------------------------------------------------------- helpers


def test_ratio_and_its_format():
    assert gc.ratio(10.0, 2.0) == 5.0
    assert gc.ratio(None, 2.0) is None and gc.ratio(1.0, None) is None
    assert gc.ratio(1.0, 0.0) is None
    # the CPU half on a quarter of the inputs: compared per input
    assert gc.ratio(2.5, 1.0, cpu_n=250, cuda_n=1000) == pytest.approx(10.0)
    assert gc.ratio(2.5, 1.0, cpu_n=1000, cuda_n=1000) == 2.5
    assert gc.fmt_ratio(None) == "not run"
    assert gc.fmt_ratio(float("nan")) == "not run"
    assert gc.fmt_ratio(0.456) == "0.46x"
    assert gc.fmt_ratio(12.34) == "12.3x"
    assert gc.fmt_ratio(1234.5) == "1234x"
    assert gc.fmt_seconds(None) == "not run"
    assert gc.fmt_seconds(0.0123456) == "0.01235"
    assert gc.fmt_seconds(123.456) == "123.5"


def test_small_helpers():
    assert gc.scaled(1000, 0.25) == 250 and gc.scaled(3, 0.1) == 1
    assert gc.one_line(ValueError("a\nb")) == "ValueError: a"
    assert gc.one_line(KeyError()) == "KeyError"
    assert len(gc.one_line(RuntimeError("x" * 500))) == 200
    shown = gc.shown_args(["--out", str(ROOT / "runs" / "x"), "--out", "/elsewhere/y"])
    assert shown == ["--out", "runs/x", "--out", "DIR"]


def test_measure_warms_up_then_takes_the_median_and_records_errors():
    calls = []

    def fn():
        calls.append("fn")
        return len(calls)

    half = gc.measure(fn, torch.device("cpu"), 3, warmup=lambda: calls.append("w"))
    assert calls == ["w", "fn", "fn", "fn"]
    assert half.value == 4 and half.seconds >= 0 and half.error is None
    assert half.peak_mib is None  # no GPU memory on the CPU

    def bad():
        raise ValueError("no\nmore")

    half = gc.measure(bad, torch.device("cpu"), 2)
    assert half.seconds is None and half.error == "ValueError: no"


def test_settle_and_row():
    f = gc.settle(gc.Figure("s", "n", cpu=gc.Half(seconds=2.0, info="x")))
    assert f.status == "cpu only (no GPU)" and f.note == "cpu: x"
    assert f.row()["cuda_s"] == "not run" and f.row()["cpu_over_cuda"] == ""
    f = gc.Figure("s", "n", cpu=gc.Half(seconds=2.0))
    f.cuda = gc.Half(seconds=0.5, peak_mib=12.0)
    f = gc.settle(f)
    assert f.status == "ok"
    assert f.row()["cpu_over_cuda"] == "4" and f.row()["cuda_peak_mib"] == "12.0"
    f = gc.Figure("s", "n", cpu=gc.Half(seconds=1.0), cuda=gc.Half(error="E: x"))
    assert gc.settle(f).status == "failed" and f.note == "cuda: E: x"


def test_junit_counts_and_cuda_test_files(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" '
        'tests="10"></testsuite></testsuites>'
    )
    c = gc.junit_counts(xml)
    assert c == {"tests": 10, "failures": 2, "errors": 1, "skipped": 3, "passed": 4}
    xml.write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="1">'
        '<testcase name="test_ok"/><testcase name="test_bad"><failure/></testcase>'
        '<testcase name="test_err"><error/></testcase></testsuite></testsuites>'
    )
    assert gc.junit_failed(xml) == ["test_bad", "test_err"]
    assert gc.junit_counts(xml)["passed"] == 1
    (tmp_path / "test_a.py").write_text("@pytest.mark.cuda\ndef test_x(): pass\n")
    (tmp_path / "test_b.py").write_text("def test_y(): pass\n")
    assert [p.name for p in gc.cuda_test_files(tmp_path)] == ["test_a.py"]
    # the repository's own GPU tests carry the marker
    names = {p.name for p in gc.cuda_test_files(ROOT / "tests")}
    assert {"test_attacks.py", "test_verify_search.py", "test_gpu_check.py"} <= names


def test_sizes_are_fixed_up_front():
    dev = gc.SIZES["device"]
    assert dev.bounds_batch == 1000 and dev.radius_batch == 1000
    assert dev.search_batch == 200 and dev.search_k == 10 and dev.cnn_batch == 256
    assert dev.hidden == (30, 128) and dev.search_work is not None
    assert gc.SIZES["tiny"].bounds_batch < 10
    # the method the cycles time: the registry's, with the budget the sizes give
    labels = [label for label, _, _ in gc.cycle_methods(gc.SIZES["tiny"])]
    assert labels == [s.removeprefix("cycle ") for s in EXPECTED_STEPS[8:]]
    _, fvaal, _ = gc.cycle_methods(gc.SIZES["tiny"])[0]
    assert fvaal.augmenter.budget.work == gc.SIZES["tiny"].cycle_fv_work
    assert fvaal.name == "FVAAL"


# ---------------------------------------------------------------- device checks


@pytest.fixture(scope="module")
def mnist_like(digits):
    model = dalv.models.build(ModelConfig(hidden=16), digits.input_shape, 10, seed=0)
    dalv.train.fit(
        model, digits.x_train[:300], digits.y_train[:300], TrainConfig(3), seed=0
    )
    return model.eval(), digits.x_test[:16]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["IBP", "CROWN", "alpha-CROWN"])
def test_bounds_on_the_device_match_the_cpu(mnist_like, device, method):
    model, x = mnist_like
    lo, hi = bounds(model, x, 0.05, method)
    net = dalv.models.build(ModelConfig(hidden=16), (1, 8, 8), 10, seed=0)
    net.load_state_dict(model.state_dict())
    net = net.to(device)
    lo_d, hi_d = bounds(net, x.to(device), 0.05, method)
    assert lo_d.device.type == device and hi_d.device.type == device
    assert bool((lo_d <= hi_d).all())
    tol = 1e-3 if method == "alpha-CROWN" else 1e-4
    assert torch.allclose(lo_d.cpu(), lo, atol=tol)
    assert torch.allclose(hi_d.cpu(), hi, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
def test_certified_radius_on_the_device(mnist_like, device):
    model, x = mnist_like
    r_cpu = certified_radius(model, x)
    net = dalv.models.build(ModelConfig(hidden=16), (1, 8, 8), 10, seed=0)
    net.load_state_dict(model.state_dict())
    r = certified_radius(net.to(device), x)  # x on the CPU, moved by the function
    assert r.device.type == device and r.dtype == torch.float64
    assert float((r.cpu() - r_cpu).abs().max()) <= 2e-3
    # each radius is proved: CROWN certifies the prediction at it
    pos = r > 0
    assert bool(pos.any())
    pred = model(x).argmax(1)
    lb = dalv.verify.margin_lower_bounds(net, x[pos.cpu()], r[pos], pred[pos.cpu()])
    assert bool((lb.min(1).values > 0).all())


@pytest.mark.parametrize("device", DEVICES)
def test_lirpa_search_on_the_device_returns_checked_points_there(mnist_like, device):
    model, x = mnist_like
    net = dalv.models.build(ModelConfig(hidden=16), (1, 8, 8), 10, seed=0)
    net.load_state_dict(model.state_dict())
    net = net.to(device).eval()
    xs = x[:6].to(device)
    eps, excl, ks = gc.paper_query(net, xs, 3)
    prop = Property()
    res = LirpaVerifier().find_batch(
        net, xs, eps, ks, excl, prop, Budget(work=50), seed=0
    )
    assert len(res) == 6 and sum(len(r.counterexamples) for r in res) > 0
    c1, c2 = dalv.verify.winner_runner_up(net(xs))
    C = prop.spec(c1, c2, 10)
    for i, r in enumerate(res):
        assert r.counterexamples.device.type == device
        ok = recheck(net, xs[i], float(eps[i]), C[i], r.counterexamples, excl[i], prop)
        assert bool(ok.all())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("verifier", ["milp", "lirpa"])
def test_an_fvaal_cycle_runs_on_the_device(digits, device, verifier):
    cfg = ExperimentConfig(
        dataset="digits",
        n_initial=20,
        budget=4,
        n_cycles=1,
        candidates=100,
        model=ModelConfig(hidden=16),
        train=TrainConfig(epochs=2),
        device=device,
    )
    method = dalv.methods.get("FVAAL")
    aug = dataclasses.replace(method.augmenter, budget=Budget(work=5), k=3)
    method = dataclasses.replace(method, augmenter=aug)
    if verifier == "lirpa":
        method = method.with_verifier(LirpaVerifier())
    assert method.augmenter.verifier.name == verifier
    state = dalv.loop.start(digits, cfg, 0)
    rec = dalv.loop.run_cycle(state, method, cfg, seed=0)
    assert state.pool.x.device.type == device
    assert next(state.model.parameters()).device.type == device
    assert len(rec.added.x) > 0 and rec.added.x.device.type == device
    assert 0.0 <= rec.test_acc <= 1.0


STRATEGIES = [
    "Random",
    "Entropy",
    "Margin",
    "BADGE",
    "Core-set",
    "FVAAL-No-Adv",
    "DFAL-No-Adv",
    "CertifiedRadius-No-Adv",
    "FVAAL_rand+FV-Adv(10)",
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_selects_on_the_device(mnist_like, pool, device, name):
    model, _ = mnist_like
    net = dalv.models.build(ModelConfig(hidden=16), (1, 8, 8), 10, seed=0)
    net.load_state_dict(model.state_dict())
    net = net.to(device).eval()
    on_dev = dalv.data.ActivePool(pool.x.to(device), pool.y.to(device), pool.labeled_at)
    strategy = dalv.methods.get(name).strategy
    rng = np.random.default_rng(0)
    sel = strategy.select(net, on_dev, 5, rng=rng, candidates=60)
    assert len(np.unique(sel.idx)) == 5 and (pool.labeled_at[sel.idx] < 0).all()
    if sel.distance is not None:
        assert sel.distance.value.shape == (5,)
    if sel.own is not None:
        assert sel.own.x.device.type == device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "name", ["DFAL", "Random+FGSM-Adv(2)", "Random+PGD-Adv(2)", "FVAAL+FGSM-Adv(2)"]
)
def test_every_augmenter_generates_on_the_device(mnist_like, pool, device, name):
    model, _ = mnist_like
    net = dalv.models.build(ModelConfig(hidden=16), (1, 8, 8), 10, seed=0)
    net.load_state_dict(model.state_dict())
    net = net.to(device).eval()
    on_dev = dalv.data.ActivePool(pool.x.to(device), pool.y.to(device), pool.labeled_at)
    method = dalv.methods.get(name)
    aug = method.augmenter
    if hasattr(aug, "budget"):
        aug = dataclasses.replace(aug, budget=Budget(work=20))
    sel = method.strategy.select(
        net, on_dev, 4, rng=np.random.default_rng(0), candidates=60
    )
    x = on_dev.x[torch.from_numpy(sel.idx)]
    y = on_dev.y[torch.from_numpy(sel.idx)]
    added = aug.generate(
        net, x, y, source_idx=sel.idx, hints=sel, rng=np.random.default_rng(0)
    )
    assert added.x.device.type == device and added.y.device.type == device
    assert len(added.x) == len(added.y) == len(added.source_idx) > 0
    assert set(added.source_idx.tolist()) <= set(sel.idx.tolist())
