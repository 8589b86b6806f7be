"""Issue 15's switches (precision, deterministic kernels, channels_last, data workers) reach the
trainer, its records and inference; the CPU default is unchanged; the GPU check is ready.

The CUDA paths are tested where CUDA is (they skip here); what the CPU can show runs here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_semiseg.engine._compute import ComputeMode, is_channels_last
from napari_semiseg.engine.cards import CardError, card_from_dict, load_card
from napari_semiseg.engine.inference import predict_volume
from napari_semiseg.engine.networks import build_network
from napari_semiseg.engine.training import TrainConfig, load_checkpoint, read_events, train
from napari_semiseg.io import Volume

from training_support import array_data, assert_same_weights, box_case, tiny_card, tiny_config, weights

REPO = Path(__file__).resolve().parents[2]
LA = Path(os.environ.get("SEMISEG_SHARED_DATA", REPO.parent / "shared" / "data")) / "LA"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# -- the settings ---------------------------------------------------------------------------------------

def test_auto_means_fp32_deterministic_contiguous_on_the_cpu_and_bf16_fast_on_cuda():
    assert ComputeMode.resolve("cpu") == ComputeMode("fp32", False, True, "cpu")
    # bf16 asked for on the CPU stays fp32: CPU results never move.
    assert ComputeMode.resolve("cpu", precision="bf16", channels_last=True).precision == "fp32"
    on_gpu = ComputeMode.resolve("cuda")  # resolving needs no device
    assert (on_gpu.precision, on_gpu.channels_last, on_gpu.deterministic) == ("bf16", True, False)
    today = ComputeMode.resolve("cuda", precision="fp32", deterministic=True, channels_last=False)
    assert (today.precision, today.channels_last, today.deterministic) == ("fp32", False, True)


def test_precision_is_a_card_recipe_field_that_the_config_takes_and_checks(tmp_path):
    data = load_card("cpu-small").to_dict()
    data["training"]["precision"] = "fp32"
    card = card_from_dict(data)
    assert card.training.precision == "fp32"
    assert TrainConfig.from_card(card, tmp_path).precision == "fp32"
    assert TrainConfig.from_card(load_card("la-vnet"), tmp_path).precision == "auto"
    data["training"]["precision"] = "fp16"
    with pytest.raises(CardError, match="training.precision must be one of"):
        card_from_dict(data)


def test_a_cpu_run_records_its_resolved_settings_in_events_checkpoint_and_model(tmp_path):
    result = train(tiny_config(tmp_path / "run", iterations=3, precision="bf16", validate_every=3), array_data())
    events = read_events(tmp_path / "run" / "events.jsonl")
    start = events[0]
    assert (start["precision"], start["deterministic"], start["channels_last"], start["num_workers"],
            start["compile"]) == ("fp32", True, False, 0, False)
    steps = [e for e in events if e["event"] == "iteration"]
    assert len(steps) == 3 and all(0.0 <= e["data_wait"] <= 1.0 for e in steps)
    expected = {"precision": "fp32", "channels_last": False, "deterministic": True, "device": "cpu"}
    assert load_checkpoint(result.checkpoint)["compute"] == expected
    assert torch.load(result.model, weights_only=True)["compute"] == expected
    # The config keeps what was asked for; a resumed run resolves it again on its own device.
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "bf16"


def test_resume_is_bitwise_in_deterministic_mode(tmp_path):
    overrides = dict(card=tiny_card(dropout=True), precision="fp32", deterministic=True, lr=0.02)
    data = array_data()
    whole = train(tiny_config(tmp_path / "whole", iterations=4, **overrides), data)
    first = train(tiny_config(tmp_path / "split", iterations=2, **overrides), data)
    second = train(tiny_config(tmp_path / "split", iterations=4, resume_from=str(first.checkpoint), **overrides), data)
    assert_same_weights(weights(whole.method.deployed_network()), weights(second.method.deployed_network()))


def test_the_cpu_default_is_todays_run(tmp_path):
    """None/"auto" on the CPU trains exactly as the explicit fp32, deterministic, in-process run."""
    data = array_data()
    auto = train(tiny_config(tmp_path / "auto", iterations=4), data)
    explicit = train(tiny_config(tmp_path / "explicit", iterations=4, precision="fp32", deterministic=True,
                                 channels_last=False, num_workers=0), data)
    assert_same_weights(weights(auto.method.deployed_network()), weights(explicit.method.deployed_network()))
    assert not is_channels_last(auto.method.deployed_network())


def test_networks_hand_back_float32_logits_under_bf16_autocast():
    net = build_network(tiny_card().network).eval()
    x = torch.randn(1, 1, 16, 24, 24)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, features = net.forward_features(x)
    assert logits.dtype == torch.float32 and features.dtype == torch.float32


def test_inference_records_its_precision_and_cpu_results_do_not_depend_on_it():
    torch.manual_seed(0)
    card = tiny_card()
    net = build_network(card.network).eval()
    volume = Volume.from_array(box_case(3)[0])
    fp32 = predict_volume(net, volume, card, device="cpu", precision="fp32")
    asked_bf16 = predict_volume(net, volume, card, device="cpu", precision="bf16", channels_last=True)
    assert (asked_bf16.precision, asked_bf16.channels_last) == ("fp32", False)
    assert asked_bf16.window_batch == card.inference.window_batch  # the card decides on the CPU
    np.testing.assert_array_equal(asked_bf16.probabilities, fp32.probabilities)
    np.testing.assert_array_equal(asked_bf16.labels, fp32.labels)


def test_semiseg_train_precision_reaches_the_run_and_is_resolved_on_the_cpu(tmp_path):
    from cli_support import ok, semiseg_here
    from data_factory import write_la_h5
    from napari_semiseg.project import Project
    root = tmp_path / "la"
    for index in range(3):
        image, label = box_case(index)
        (root / f"case{index}").mkdir(parents=True)
        write_la_h5(root / f"case{index}" / "mri_norm2.h5", image, label)
    (root / "train.list").write_text("case0\ncase1\ncase2\n")
    project = tmp_path / "project"
    ok(semiseg_here("init", project))  # the command lines in this process: no interpreter start each
    ok(semiseg_here("import", project, "--la-h5", root, "--list", root / "train.list", "--labeled", 3))
    ok(semiseg_here("train", project, "--card", "cpu-small", "--iterations", 1, "--validation-count", 1,
                    "--device", "cpu", "--precision", "bf16"))
    with Project.open(project) as store:
        model = store.active_model()
        assert model.config["precision"] == "bf16"  # what was asked, kept for a resume elsewhere
        payload = torch.load(model.checkpoint_path, weights_only=True)
    assert payload["compute"]["precision"] == "fp32" and payload["compute"]["deterministic"] is True


def test_the_device_resident_sweep_and_finish_agree_with_the_cpu_path_when_run_on_the_cpu():
    """The CUDA code path (one transfer, batched MC passes, device-side finish) run on the CPU: the
    same probabilities, labels and entropy as the CPU path; MC statistics of the right shape."""
    from napari_semiseg.engine.inference._predict import (_finish, _finish_on_device, _prepare_sweep, _run_sweep,
                                                          _run_sweep_on_device)
    from napari_semiseg.engine.inference._windows import grid_for_card
    torch.manual_seed(0)
    card = tiny_card(dropout=True)
    net = build_network(card.network).eval()
    volume = Volume.from_array(box_case(3)[0])
    grid = grid_for_card(card)
    cpu = torch.device("cpu")
    sweep = _prepare_sweep(net, volume, card, grid, 1, False)
    expected, _ = _run_sweep(sweep, cpu, 2, lambda report: None)
    resident, variance = _run_sweep_on_device(sweep, cpu, 2, lambda report: None)
    assert variance is None
    torch.testing.assert_close(resident, expected)
    labels, probabilities, uncertainty, _ = _finish(expected, None, volume.shape, False)
    labels2, probabilities2, uncertainty2, _ = _finish_on_device(resident, None, volume.shape, False)
    np.testing.assert_array_equal(labels2, labels)
    np.testing.assert_allclose(probabilities2, probabilities, atol=1e-6)
    np.testing.assert_allclose(uncertainty2, uncertainty, atol=1e-5)
    reports = []
    mc = _prepare_sweep(net, volume, card, grid, 3, True)
    mean, variance = _run_sweep_on_device(mc, cpu, 2, reports.append)
    assert mean.shape == expected.shape and variance.shape == expected.shape[1:]
    torch.testing.assert_close(mean.sum(dim=0), torch.ones_like(mean[0]))
    assert float(variance.max()) > 0 and float(variance.min()) >= 0
    assert reports[-1].windows_done == reports[-1].windows_total == 3 * mc.windows
    assert not any(m.training for m in net.modules())  # modes restored


@pytest.mark.parametrize("method", ["supervised", "mean-teacher", "ua-mt", "ss-net", "crossmatch", "dual-branch-kd"])
def test_every_method_steps_under_bf16_autocast_and_channels_last_with_float32_losses(method):
    """The CUDA default mode's step, run on the CPU's own bf16 autocast: no dtype clash in any
    method, and every loss comes back float32 and finite."""
    from benchmarks.iteration_cost import _prepared, _to, trainer_batch
    from napari_semiseg.engine.methods import StepInfo, create_method
    from napari_semiseg.engine.training import build_optimizer
    card = tiny_card(dropout=True)
    mode = ComputeMode("bf16", True, False, "cpu")  # what resolve gives on CUDA, on this device
    torch.manual_seed(0)
    trained = _prepared(create_method(method, card), torch.device("cpu"), mode, False)
    trained.set_training(True)
    optimizer = build_optimizer(trained.parameters(), TrainConfig.from_card(card, "unused", method=method))
    batch = _to(trainer_batch(trained, card, batch_labeled=2, batch_unlabeled=2), torch.device("cpu"), mode)
    with mode.autocast():
        losses = trained.training_step(batch, StepInfo(0, 10, 0.01))
    losses["total"].backward()
    optimizer.step()
    assert {name: value.dtype for name, value in losses.items()} == {name: torch.float32 for name in losses}
    assert torch.isfinite(losses["total"]) and is_channels_last(trained.deployed_network())


# -- CUDA only ------------------------------------------------------------------------------------------

@cuda
def test_a_cuda_run_defaults_to_bf16_channels_last_benchmark_and_workers(tmp_path):
    result = train(tiny_config(tmp_path / "run", iterations=3, device="cuda", validate_every=3), array_data())
    start = read_events(tmp_path / "run" / "events.jsonl")[0]
    assert (start["precision"], start["deterministic"], start["channels_last"]) == ("bf16", False, True)
    assert start["num_workers"] >= 1
    assert is_channels_last(result.method.deployed_network())
    assert np.isfinite(result.metrics["final_losses"]["total"])


@cuda
def test_cuda_inference_in_bf16_matches_fp32_and_comes_back_as_host_arrays():
    torch.manual_seed(0)
    card = tiny_card(dropout=True)
    net = build_network(card.network).eval()
    volume = Volume.from_array(box_case(3)[0])
    fp32 = predict_volume(net, volume, card, device="cuda", precision="fp32")
    bf16 = predict_volume(net, volume, card, device="cuda")
    assert bf16.precision == "bf16" and isinstance(bf16.probabilities, np.ndarray)
    assert bf16.probabilities.dtype == np.float32
    assert np.abs(bf16.probabilities - fp32.probabilities).max() < 0.05
    assert bf16.window_batch >= 1
    mc = predict_volume(net, volume, card, device="cuda", mc_samples=4)
    assert mc.passes == 4 and mc.mc_variance.shape == volume.shape and mc.mc_variance.max() > 0
    assert not is_channels_last(net)  # the caller's network keeps its memory format


@cuda
def test_the_gpu_check_runs_on_cuda(tmp_path):
    _run_gpu_check(tmp_path, "cuda")


# -- the GPU check ------------------------------------------------------------------------------------------

@pytest.mark.skipif(not (LA / "train.list").is_file(), reason="shared LA data absent")
def test_the_pack_of_a_real_la_volume_is_lossless():
    from benchmarks._common import la_list
    from benchmarks._packed_la import decode_case, encode_case
    from napari_semiseg.io import read_volume
    case_id, path = la_list(LA)[0]
    volume = read_volume(path)
    packed = encode_case(volume.array, volume.label)
    image, label = decode_case(packed)
    assert image.dtype == np.float32 and np.array_equal(image.view(np.uint32), volume.array.view(np.uint32))
    assert np.array_equal(label, volume.label)
    assert len(packed) < 0.75 * (volume.array.nbytes / 4 + volume.label.nbytes)  # well under the h5's 2.3 MB


def _run_gpu_check(tmp_path: Path, device: str) -> dict:
    from benchmarks._packed_la import read_pack, write_pack
    cases = []
    for seed in range(4):
        image, label = box_case(seed)
        image = np.round(image / 25.0).astype(np.float32)  # ≤ 256 distinct values, like the LA volumes
        cases.append((f"box{seed}", "labeled" if seed < 2 else "validation", image, label))
    write_pack(tmp_path / "pack", cases, (1.0, 1.0, 1.0))
    assert [np.array_equal(c.image, cases[i][2]) for i, c in enumerate(read_pack(tmp_path / "pack"))] == [True] * 4
    card = tmp_path / "tiny.yaml"
    card.write_text(json.dumps(tiny_card().to_dict()))  # JSON is YAML
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "run", "--data", str(tmp_path / "pack"), "--out",
         str(tmp_path / "out"), "--device", device, "--quick", "--card", str(card)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    sections = result["sections"]
    assert {"environment", "iteration_cost", "training", "inference", "compile", "end"} <= set(sections)
    failed = {name: s["error"] for name, s in sections.items() if "error" in s}
    assert not failed, failed
    assert "## training" in (tmp_path / "out" / "gpu_check.md").read_text()
    return sections


def test_the_gpu_check_runs_end_to_end_on_the_cpu_in_quick_mode(tmp_path):
    sections = _run_gpu_check(tmp_path, "cpu")
    runs = sections["training"]["runs"]
    assert [r["mode"] for r in runs] == ["fp32-deterministic", "default"]
    assert all(0 <= r["dice"] <= 100 and r["data_wait_median"] is not None for r in runs)
    assert {row["method"] for row in sections["iteration_cost"]["table"]} == {"supervised", "supervised (full batch)"}
    assert sections["inference"]["table"][0]["card-grid_fp32_dice"] >= 0
