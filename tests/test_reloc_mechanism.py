"""ReLoc's mechanism, step by step on tiny random networks: what each phase updates, where the
localization gradient goes, the networks' modes, the per-network plateau schedule, Table I's
ablations."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from reloc.config import load_config
from reloc.engine.distributed import DistContext
from reloc.engine.tasks import create_task
from reloc.models import create_localizer
from reloc.models.weights import save_network

TINY_NETWORKS = [
    "model.localizer_args={width: 0.25, faithful: false}",
    "model.restorer_args={preset: tiny}",
    "model.discriminator_args={width: 8}",
]


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> str:
    """A random tiny localizer saved as M^P's weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("start") / "localizer.safetensors"
    save_network(create_localizer("dfcn", width=0.25, faithful=False), path)
    return str(path)


def make_task(start: str, *extra: str):
    config = load_config(
        None, ["data.dataset=unused", "train.task=reloc", f"model.localizer_weights={start}", *TINY_NETWORKS, *extra]
    )
    return create_task(config.check(), torch.device("cpu"), DistContext())


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    plain = torch.rand(2, 3, 64, 64, generator=generator)
    mask = (torch.rand(2, 1, 64, 64, generator=generator) > 0.7).float()
    return {
        "plain": plain,
        "distorted": (plain + 0.05 * torch.randn(plain.shape, generator=generator)).clamp(0, 1),
        "mask": mask,
    }


def snapshot(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm statistics included)."""
    return {key: value.detach().clone() for key, value in network.state_dict().items()}


def unchanged(network: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(before[key], value) for key, value in network.state_dict().items())


def test_localization_gradient_reaches_the_restorer_through_the_frozen_localizer(start):
    task = make_task(start, "train.loss_terms=[mae, localization]")
    task.weights = dataclasses.replace(task.weights, mae=0.0)  # L_R = localization term alone
    localizer, restorer = task.networks["localizer"], task.networks["restorer"]
    before = snapshot(localizer)
    losses = task.restoration_step(make_batch())
    assert losses["restoration_localization"] > 0 and "restoration_gan" not in losses
    gradients = [p.grad for p in restorer.parameters() if p.grad is not None]
    assert gradients and sum(float(g.abs().sum()) for g in gradients) > 0  # only L_L can have produced them
    assert all(p.grad is None for p in localizer.parameters())  # frozen: no gradient kept
    assert unchanged(localizer, before)
    assert all(p.requires_grad for p in localizer.parameters())  # unfrozen afterwards
    # with the localization term switched off as well, nothing reaches the restorer
    task.weights = dataclasses.replace(task.weights, localization=0.0)
    task.restoration_step(make_batch(1))
    assert all(float(p.grad.abs().sum()) == 0 for p in restorer.parameters() if p.grad is not None)


def test_each_phase_updates_only_its_networks(start):
    task = make_task(start)
    localizer, restorer, discriminator = (task.networks[k] for k in ("localizer", "restorer", "discriminator"))
    before = {role: snapshot(network) for role, network in task.networks.items()}
    task.restoration_step(make_batch())
    assert unchanged(localizer, before["localizer"])  # weights and BatchNorm statistics
    assert not unchanged(restorer, before["restorer"]) and not unchanged(discriminator, before["discriminator"])

    before = {role: snapshot(network) for role, network in task.networks.items()}
    task.localization_step(make_batch(1))
    assert unchanged(restorer, before["restorer"]) and unchanged(discriminator, before["discriminator"])
    assert not unchanged(localizer, before["localizer"])
    assert task.updates == {"localizer": 1, "restorer": 1, "discriminator": 1}


def test_modes_in_the_restoration_step_follow_the_release(start):
    """The discriminator stays in train mode while the restorer is updated (its BatchNorm
    uses the batch's statistics); only the localizer is put in eval mode."""
    task = make_task(start)
    seen: dict[str, list[bool]] = {"localizer": [], "discriminator": []}
    handles = [
        task.networks[role].register_forward_pre_hook(lambda module, _, role=role: seen[role].append(module.training))
        for role in seen
    ]
    try:
        task.restoration_step(make_batch())
    finally:
        for handle in handles:
            handle.remove()
    assert seen["discriminator"] == [True, True, True]  # D update on real and fake, then the R update
    assert seen["localizer"] == [False]
    assert all(network.training for network in task.networks.values())


def test_plateau_schedule_steps_each_network_after_the_phases_that_trained_it(start):
    task = make_task(start, "optim.plateau_patience=0", "optim.plateau_factor=0.5", "optim.lr=0.001")
    schedulers = task.schedulers
    worse = {"val_localization": 1.0, "val_restoration": 1.0}
    task.end_epoch(worse, {"restoration"})
    assert (schedulers["restorer"].last_epoch, schedulers["localizer"].last_epoch) == (1, 0)
    task.end_epoch(worse, {"localization"})
    assert (schedulers["restorer"].last_epoch, schedulers["localizer"].last_epoch) == (1, 1)
    for _ in range(2):  # no improvement, patience 0: each network's rate halves only when its own phase ran
        task.end_epoch({"val_localization": 2.0, "val_restoration": 2.0}, {"restoration"})
    rates = task.learning_rates()
    assert rates["lr_restorer"] == pytest.approx(0.001 * 0.5**2)
    assert rates["lr_localizer"] == pytest.approx(0.001)
    assert "discriminator" not in schedulers  # constant rate, as published
    task.end_epoch(worse, {"joint"})
    assert (schedulers["restorer"].last_epoch, schedulers["localizer"].last_epoch) == (4, 2)


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        ("[mae]", {"mae"}),
        ("[mae, gan]", {"mae", "gan"}),
        ("[mae, localization]", {"mae", "localization"}),
        ("[mae, gan, localization]", {"mae", "gan", "localization"}),
    ],
)
def test_each_table_i_ablation_trains(start, terms, expected):
    task = make_task(start, f"train.loss_terms={terms}", "train.loss=official")
    before = {role: snapshot(network) for role, network in task.networks.items()}
    losses = task.restoration_step(make_batch())
    assert {key.removeprefix("restoration_") for key in losses if key.startswith("restoration_")} == expected
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    assert not unchanged(task.networks["restorer"], before["restorer"])
    assert unchanged(task.networks["discriminator"], before["discriminator"]) == ("gan" not in expected)
    assert task.updates["discriminator"] == int("gan" in expected)
    weights = task.weights
    total = weights.mae * losses["restoration_mae"] + sum(
        getattr(weights, term) * losses[f"restoration_{term}"] for term in expected - {"mae"}
    )
    assert losses["restoration"] == pytest.approx(total, rel=1e-5)
    task.localization_step(make_batch(1))
    assert not unchanged(task.networks["localizer"], before["localizer"])
