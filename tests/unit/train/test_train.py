"""The training loop and the training entry: defaults, validation, phases, schedules, logs."""

import csv

import pytest
import torch

from vfbench.errors import VfbenchError
from vfbench.train import crop_flip, resolve_train_entry, train_model

SHORT = {"epochs": 2, "batch_size": 32, "optimizer": {"name": "adam", "lr": 1e-2},
         "schedule": {"name": "none"}}


def test_defaults_are_paper_002_natural_training():
    entry = resolve_train_entry({})
    assert entry["losses"] == {"natural": 1.0}
    assert entry["batch_size"] == 64 and entry["epochs"] == 100
    assert entry["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                                  "weight_decay": 1e-4}
    assert entry["schedule"] == {"name": "plateau", "factor": 0.1, "patience": 3}
    assert entry["phases"] == []


def test_resolution_fills_loss_defaults_and_is_idempotent():
    entry = resolve_train_entry({"losses": {"trades": 1, "nbc": 2},
                                 "loss_options": {"nbc": {"eps": 0.3}},
                                 "optimizer": {"name": "adam", "lr": 1e-4}})
    assert entry["loss_options"]["nbc"]["eps"] == 0.3
    assert entry["loss_options"]["nbc"]["step"] == "gradient"
    assert entry["loss_options"]["trades"]["beta"] == 6.0
    assert entry["optimizer"] == {"name": "adam", "lr": 1e-4, "beta1": 0.9, "beta2": 0.999,
                                  "weight_decay": 0.0}
    assert resolve_train_entry(entry) == entry


@pytest.mark.parametrize("entry,message", [
    ({"epoch": 3}, r"unknown keys \['epoch'\]"),
    ({"losses": {"madry": 1}}, "unknown loss 'madry'"),
    ({"losses": {"natural": 1}, "loss_options": {"pgd": {"epsilon": 0.1}}},
     r"loss 'pgd': unknown options \['epsilon'\]"),
    ({"loss_options": {"nbc": {"step": "newton"}}}, "step='newton'"),
    ({"loss_options": {"pgd": {"steps": "ten"}}}, "must be a number"),
    ({"losses": {"nbc": 1.0}}, "needs a data term"),
    ({"optimizer": {"name": "adam", "momentum": 0.9}}, r"unknown keys \['momentum'\]"),
    ({"optimizer": {"name": "rmsprop"}}, "'rmsprop' unknown"),
    ({"schedule": {"name": "multistep", "milestones": [50, 75]}}, "fractions"),
    ({"epochs": 0}, "epochs: 0 must be an integer >= 1"),
    ({"augment": "mixup"}, "augment"),
    ({"phases": [{"lr": 0.1}]}, r"phases\[0\]: unknown keys \['lr'\]"),
])
def test_bad_entries_are_rejected_with_the_name_of_the_problem(entry, message):
    with pytest.raises(VfbenchError, match=message):
        resolve_train_entry(entry)


def test_phases_merge_over_the_entry():
    entry = resolve_train_entry({
        "losses": {"pgd": 1.0}, "loss_options": {"pgd": {"eps": 0.3}}, "epochs": 200,
        "optimizer": {"name": "adam", "lr": 1e-3},
        "phases": [{}, {"losses": {"pgd": 1.0, "nbc": 1.0}, "loss_options": {"nbc": {"eps": 0.3}},
                        "optimizer": {"lr": 1e-4}},
                   {"optimizer": {"name": "sgd"}}],
    })
    first, second, third = entry["phases"]
    assert first["losses"] == {"pgd": 1.0} and first["epochs"] == 200
    assert second["losses"] == {"pgd": 1.0, "nbc": 1.0}
    assert second["loss_options"]["pgd"]["eps"] == 0.3 == second["loss_options"]["nbc"]["eps"]
    assert second["optimizer"]["name"] == "adam" and second["optimizer"]["lr"] == 1e-4
    assert third["optimizer"]["name"] == "sgd" and third["optimizer"]["lr"] == 0.1


def test_history_metrics_and_csv_log(dataset, make_model, tmp_path):
    log = tmp_path / "train_log.csv"
    result = train_model(make_model(), dataset, {**SHORT, "val_fraction": 0.25}, "cpu", seed=0,
                         log_csv=log)
    history, metrics = result["history"], result["metrics"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert metrics["device"] == "cpu" and metrics["epochs_run"] == 2
    assert metrics["seconds_per_epoch"] > 0 and 0 <= metrics["val_acc"] <= 1
    assert result["hyperparameters"]["optimizer"]["lr"] == 1e-2
    rows = list(csv.DictReader(log.open()))
    assert len(rows) == 2
    columns = {"epoch", "lr", "loss", "loss_natural", "train_acc", "val_loss", "seconds"}
    assert columns <= set(rows[0])
    assert float(rows[1]["loss"]) == pytest.approx(history[1]["loss"])


def test_training_is_deterministic_for_a_seed(dataset, make_model):
    weights = []
    for outside_seed in (1, 2):
        torch.manual_seed(5)
        model = make_model("cnn_4layer")
        torch.manual_seed(outside_seed)  # the trainer seeds itself; outside state must not matter
        train_model(model, dataset, {**SHORT, "losses": {"pgd": 1.0}}, "cpu", seed=3)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1])


def test_phases_run_in_order_with_their_own_losses(dataset, make_model, tmp_path):
    entry = {**SHORT, "epochs": 1,
             "phases": [{}, {"losses": {"natural": 1.0, "nbc": 1.0}, "epochs": 2}]}
    history = train_model(make_model(), dataset, entry, "cpu", seed=0,
                          log_csv=tmp_path / "log.csv")["history"]
    assert [row["phase"] for row in history] == [0, 1, 1]
    assert "loss_nbc" not in history[0] and "loss_nbc" in history[1]
    header = next(csv.reader((tmp_path / "log.csv").open()))
    assert "loss_nbc" in header


def test_multistep_schedule_decays_at_fractions_of_the_epochs(dataset, make_model):
    entry = {**SHORT, "epochs": 4, "optimizer": {"name": "sgd", "lr": 0.1},
             "schedule": {"name": "multistep", "milestones": [0.5, 0.75]}}
    history = train_model(make_model(), dataset, entry, "cpu", seed=0)["history"]
    assert [row["lr"] for row in history] == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_early_stopping_when_the_loss_stops_decreasing(dataset, make_model):
    entry = {**SHORT, "epochs": 10, "optimizer": {"name": "sgd", "lr": 0.0},
             "early_stop_patience": 2}
    result = train_model(make_model(), dataset, entry, "cpu", seed=0)
    assert result["metrics"]["epochs_run"] < 10 and result["metrics"]["stopped_early"] == [True]


def test_eps_ramps_up_linearly_over_the_given_epochs(dataset, make_model):
    entry = {**SHORT, "epochs": 3, "losses": {"pgd": 1.0}, "eps_ramp": {"start_epoch": 1,
                                                                        "epochs": 1}}
    ramps = [row["eps_ramp"] for row in train_model(make_model(), dataset, entry, "cpu",
                                                    seed=0)["history"]]
    assert ramps[0] == 0.0 and 0 < ramps[1] < 1 and ramps[2] == 1.0


def test_non_finite_loss_stops_training_with_an_error(dataset, make_model):
    entry = {**SHORT, "optimizer": {"name": "sgd", "lr": 1e12}}
    with pytest.raises(VfbenchError, match="training loss became"):
        train_model(make_model("cnn_4layer"), dataset, {**entry, "epochs": 5}, "cpu", seed=0)


def test_crop_flip_shifts_and_mirrors_images():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    out = crop_flip(x, torch.Generator().manual_seed(0), padding=0)
    for image, original in zip(out, x, strict=True):
        assert torch.equal(image, original) or torch.equal(image, original.flip(-1))
    padded = crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    assert padded.shape == x.shape


def test_a_run_that_ends_at_chance_is_flagged_as_collapsed(dataset, make_model):
    # A network whose output ignores its input (as after paper 002's SET1 sparsity drove every
    # BN scale to zero): zero final layer, learning rate 0, so it predicts one class throughout.
    model = make_model()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    entry = {**SHORT, "optimizer": {"name": "sgd", "lr": 0.0}}
    with pytest.warns(UserWarning, match="collapsed"):
        result = train_model(model, dataset, entry, "cpu", seed=0)
    assert result["metrics"]["collapsed"] is True
    healthy = train_model(make_model(), dataset, {**SHORT, "epochs": 3}, "cpu", seed=0)
    assert healthy["metrics"]["collapsed"] is False and healthy["metrics"]["train_acc"] > 0.5


def test_keep_best_restores_the_epoch_with_the_best_validation_robust_accuracy(dataset,
                                                                                make_model):
    from vfbench.train import _robust_accuracy, _split

    model = make_model()
    keep_best = {"eps": 0.05, "steps": 3}

    def sabotage(epoch):  # the last epoch starts from scrambled weights: it cannot be the best
        if epoch == 3:
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(torch.randn_like(p) * 3)
    result = train_model(model, dataset, {**SHORT, "epochs": 4, "val_fraction": 0.25,
                                          "keep_best": keep_best}, "cpu", seed=0,
                         on_epoch_start=sabotage)
    scores = [row["val_robust_acc"] for row in result["history"]]
    best = max(scores)
    assert scores[-1] < best
    x, y = dataset.tensors("train")
    _, _, x_val, y_val = _split(x, y, 0.25, 0)
    resolved = {"eps": 0.05, "steps": 3, "restarts": 1}
    assert _robust_accuracy(model, x_val, y_val, resolved, 0) == pytest.approx(best)
    assert result["metrics"]["best_epoch"] == 1 + scores.index(best)


def test_keep_best_needs_a_validation_split_and_a_radius():
    with pytest.raises(VfbenchError, match="set val_fraction above 0"):
        resolve_train_entry({"keep_best": {"eps": 0.1}})
    with pytest.raises(VfbenchError, match=r"keep_best.eps: None must be a radius"):
        resolve_train_entry({"keep_best": {}, "val_fraction": 0.1})
    entry = resolve_train_entry({"keep_best": {"eps": 0.1, "restarts": 2}, "val_fraction": 0.1})
    assert entry["keep_best"] == {"eps": 0.1, "steps": 10, "restarts": 2}
