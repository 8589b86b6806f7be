"""DistributedDataParallel on CPU: two real processes under ``torch.distributed.run`` with gloo."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from napari_semiseg.engine.methods import create_method
from napari_semiseg.engine.training import EVENTS_FILE, load_checkpoint, read_events
from napari_semiseg.engine.training._subprocess import free_port
from training_support import file_data_spec, tiny_config, weights_differ

RANK_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    torch.set_num_threads(1)
    from napari_semiseg.engine.training import TrainConfig, train

    result = train(TrainConfig.read(sys.argv[1]))
    rank = os.environ["RANK"]
    network = result.method.deployed_network()
    torch.save({"parameters": {k: v.detach().clone() for k, v in network.named_parameters()},
                "losses": [h["losses"]["total"] for h in result.history],
                "validation_dice": result.metrics["validation_dice"]},
               os.path.join(sys.argv[2], f"rank{rank}.pt"))
""")


def test_two_gloo_ranks_train_the_same_weights_from_different_batches(tmp_path):
    config = tiny_config(tmp_path / "run", iterations=2, batch_labeled=2, validate_every=2, checkpoint_every=1,
                         data=file_data_spec(tmp_path / "cases", n_labeled=4, n_unlabeled=0, n_validation=2))
    config_path = config.write()
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(script), str(config_path), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    first, second = (r["parameters"] for r in ranks)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), f"{key} differs between the ranks"
    torch.manual_seed(config.seed)
    initial = dict(create_method("supervised", config.card).deployed_network().named_parameters())
    assert weights_differ({k: v.detach() for k, v in initial.items()}, first)
    # each rank drew its own batches (same weights at step 1, different losses), yet the
    # gradients were averaged: the weights agree
    assert ranks[0]["losses"][0] != ranks[1]["losses"][0]
    # validation was shared out (one case per rank) and gathered: both ranks know both cases
    assert ranks[0]["validation_dice"] == ranks[1]["validation_dice"] is not None

    events = read_events(tmp_path / "run" / EVENTS_FILE)  # rank 0 alone writes
    assert [e["event"] for e in events].count("start") == 1
    assert events[0]["world_size"] == 2 and events[-1]["event"] == "finished"
    validation = next(e for e in events if e["event"] == "validation")
    assert set(validation["per_case"]) == {"case200", "case201"}
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint["iteration"] == 2 and len(checkpoint["rng"]) == 2
