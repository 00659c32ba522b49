"""The paper's training situations, one class each; the loop itself is in ``trainer.py``.

- :class:`PlainTask` (``plain``): the localizer on plain images, M^P.
- :class:`FinetuneTask` (``finetune``): the localizer, started from a ``plain`` run, on
  distorted images, M^{D|P}.
- :class:`ReLocTask` (``reloc``): Algorithm 1. Restorer and discriminator start random
  (or from a file), the localizer from a ``plain`` run. Restoration phases update the
  discriminator, then the restorer with ``L_R`` (localizer frozen but differentiable);
  localization phases update the localizer on restored images with the restorer frozen.
  Phases alternate per epoch (epochs 1, 3, 5, ... restore) or every K steps. With
  ``train.restorer_warmup_epochs=N`` (not the paper's) the first N epochs update only the
  restorer with only the MAE term, and the alternation starts after them; with N equal to
  ``train.epochs`` the run pre-trains the restorer alone (a JPEG-artifact remover when the
  distortion is JPEG; ``train.select_by=psnr`` keeps its best epoch) and the localizer's
  weights go through it unchanged.
- :class:`JointTask` (``joint``): both phases every step (the paper's Table II ablation).

A batch is ``{"plain": (B, 3, c, c), "distorted": (B, 3, c, c), "mask": (B, 1, c, c)}``.
The restorer's raw output is used for the pixel loss; the discriminator and the
localizer see it clamped to [0, 1], as the inference pipeline does.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterator

import torch
from torch import nn
from torch.optim import Adam
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from reloc.config import Config, ConfigError
from reloc.engine.distributed import DistContext
from reloc.losses import LOSS_PRESETS, LossWeights, discriminator_loss, localization_loss, mae_loss, restoration_loss
from reloc.metrics import psnr
from reloc.models import create_discriminator, create_localizer, create_restorer, segmentation_logits
from reloc.models.weights import load_foreign_weights
from reloc.precision import autocast, resolve_precision
from reloc.runs import resolve_weights


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message names the loss, epoch and step."""


@contextlib.contextmanager
def frozen(*modules: nn.Module, eval_mode: bool = True) -> Iterator[None]:
    """No parameter gradients inside (and evaluation mode unless ``eval_mode=False``);
    the previous state is restored after."""
    saved = [(m, m.training, [p.requires_grad for p in m.parameters()]) for m in modules]
    for module in modules:
        module.requires_grad_(False)
        if eval_mode:
            module.eval()
    try:
        yield
    finally:
        for module, training, flags in saved:
            module.train(training)
            for param, flag in zip(module.parameters(), flags, strict=True):
                param.requires_grad_(flag)


class CosineFactor:
    """``m + (1 - m) * (1 + cos(pi * e / E)) / 2``: the ``cosine`` schedule's rate factor after epoch ``e``."""

    def __init__(self, epochs: int, minimum: float) -> None:
        self.epochs, self.minimum = epochs, minimum

    def __call__(self, epoch: int) -> float:
        progress = min(epoch, self.epochs) / self.epochs
        return self.minimum + (1.0 - self.minimum) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Task:
    """Owns the networks, optimizers, schedulers and losses of one training situation.

    Subclasses define which networks train (``roles``), ``phase`` and the steps; the
    trainer owns the loops (training, validation) and the epoch / step / phase
    bookkeeping, and calls :meth:`train_step`, :meth:`validation_batch` and :meth:`end_epoch`.
    """

    roles: tuple[str, ...] = ("localizer",)
    needs_distorted: bool = False

    def __init__(self, config: Config, device: torch.device, dist: DistContext) -> None:
        self.config = config
        self.device = device
        self.dist = dist
        self.weights: LossWeights = LOSS_PRESETS[config.train.loss]
        #: compute dtype of the forward passes (autocast); fp16 adds grad scaling
        self.dtype = resolve_precision(config.train.precision if config.train.amp else "fp32", device)
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, ReduceLROnPlateau | LambdaLR] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        self._build()
        self.epoch = 0
        self.step = 0
        #: optimizer steps taken per network (checkpointed; fairness controls count them)
        self.updates: dict[str, int] = {role: 0 for role in self.roles}

    # --- construction -------------------------------------------------------------
    def _build(self) -> None:
        model, optim = self.config.model, self.config.optim
        builders = {
            "localizer": lambda: create_localizer(model.localizer, **model.localizer_args),
            "restorer": lambda: create_restorer(model.restorer, **model.restorer_args),
            "discriminator": lambda: create_discriminator(model.discriminator, **model.discriminator_args),
        }
        for role in self.roles:
            try:
                network = builders[role]().to(self.device)
            except TypeError as error:  # an unknown or mistyped builder argument
                raise ConfigError(f"model.{role}_args: cannot build the {role}: {error}") from None
            start = {"localizer": model.localizer_weights, "restorer": model.restorer_weights}.get(role)
            if start:
                load_foreign_weights(network, resolve_weights(start, role), strict=True)
            self.dist.broadcast_module(network)
            self.networks[role] = network.train()
            if role == "discriminator":
                self.optimizers[role] = Adam(
                    network.parameters(), lr=optim.discriminator_lr, betas=optim.discriminator_betas
                )
            else:
                rate = optim.restorer_lr if role == "restorer" and optim.restorer_lr is not None else optim.lr
                self.optimizers[role] = Adam(network.parameters(), lr=rate)
                if optim.schedule == "cosine":
                    factor = CosineFactor(self.config.train.epochs, optim.cosine_min_factor)
                    self.schedulers[role] = LambdaLR(self.optimizers[role], factor)
                else:
                    self.schedulers[role] = ReduceLROnPlateau(
                        self.optimizers[role], mode="min", factor=optim.plateau_factor, patience=optim.plateau_patience
                    )
            self.scalers[role] = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.dtype)

    # --- one update ---------------------------------------------------------------
    def _update(self, role: str, loss: torch.Tensor, name: str) -> None:
        """Backward ``loss`` into ``role``'s network, average over processes, step."""
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteLossError(
                f"non-finite {name} loss ({loss.item()}) at epoch {self.epoch + 1}, step {self.step + 1}"
            )
        network, optimizer, scaler = self.networks[role], self.optimizers[role], self.scalers[role]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        self.dist.average_gradients(network)
        scaler.step(optimizer)
        scaler.update()
        self.dist.broadcast_buffers(network)
        self.updates[role] = self.updates.get(role, 0) + 1

    def to_device(self, batch: dict) -> dict[str, torch.Tensor]:
        """The batch's tensors on the task's device (names and other entries dropped)."""
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}

    # --- interface used by the trainer --------------------------------------------
    def phase(self) -> str:
        """What the current step updates (``localization``, ``restoration`` or ``joint``)."""
        return "localization"

    def localizer_input(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The image the localizer sees for this task, ``(B, 3, c, c)``."""
        return batch["plain"]

    def train_step(self, batch: dict) -> dict[str, float]:
        """One optimisation step; returns the losses as floats."""
        batch = self.to_device(batch)
        with self._autocast():
            logits = segmentation_logits(self.networks["localizer"](self.localizer_input(batch)))
        loss = localization_loss(logits.float(), batch["mask"], self.weights)
        self._update("localizer", loss, "localization")
        return {"localization": loss.item()}

    def validation_batch(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], torch.Tensor]:
        """Validation losses of one batch (already on the device, networks in eval mode) and
        the localizer's probabilities ``(B, 1, c, c)``; the trainer runs the loop."""
        with self._autocast():
            logits = segmentation_logits(self.networks["localizer"](self.localizer_input(batch))).float()
        loss = localization_loss(logits, batch["mask"], self.weights)
        return {"localization": loss.item()}, torch.sigmoid(logits)

    def end_epoch(self, validation: dict[str, float], phases: set[str]) -> None:
        """``plateau``: step each scheduler whose network trained this epoch, on its
        validation loss. ``cosine``: step every scheduler (the rate follows the epoch)."""
        if self.config.optim.schedule == "cosine":
            with warnings.catch_warnings():  # a network idle so far (warm-up) still follows the epoch
                warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
                for scheduler in self.schedulers.values():
                    scheduler.step()
            return
        if phases & {"localization", "joint"} and "localizer" in self.schedulers:
            self.schedulers["localizer"].step(validation["val_localization"])
        if phases & {"restoration", "joint", "warmup"} and "restorer" in self.schedulers:
            self.schedulers["restorer"].step(validation["val_restoration"])

    def learning_rates(self) -> dict[str, float]:
        return {f"lr_{role}": opt.param_groups[0]["lr"] for role, opt in self.optimizers.items()}

    # --- checkpoint state ---------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "networks": {role: net.state_dict() for role, net in self.networks.items()},
            "optimizers": {role: opt.state_dict() for role, opt in self.optimizers.items()},
            "schedulers": {role: sch.state_dict() for role, sch in self.schedulers.items()},
            "scalers": {role: sc.state_dict() for role, sc in self.scalers.items()},
            "epoch": self.epoch,
            "step": self.step,
            "updates": dict(self.updates),
        }

    def load_state_dict(self, state: dict) -> None:
        for role, network in self.networks.items():
            network.load_state_dict(state["networks"][role])
        for role, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][role])
        for role, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][role])
        for role, scaler in self.scalers.items():
            scaler.load_state_dict(state["scalers"][role])
        self.epoch, self.step = state["epoch"], state["step"]
        self.updates.update(state.get("updates", {}))


class PlainTask(Task):
    """M^P: the localizer trained on plain images."""


class FinetuneTask(Task):
    """M^{D|P}: the localizer, started from a plain run, trained on distorted images."""

    needs_distorted = True

    def localizer_input(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["distorted"]


class ReLocTask(Task):
    """Algorithm 1: alternate restoration (D then R) and localization (L) phases."""

    roles = ("localizer", "restorer", "discriminator")
    needs_distorted = True

    def __init__(self, config: Config, device: torch.device, dist: DistContext) -> None:
        super().__init__(config, device, dist)
        terms = set(config.train.loss_terms)
        self.use_gan = "gan" in terms and self.weights.gan > 0
        self.use_localization = "localization" in terms and self.weights.localization > 0

    def in_warmup(self) -> bool:
        """Within ``train.restorer_warmup_epochs`` (MAE-only restorer epochs)."""
        return self.epoch < self.config.train.restorer_warmup_epochs

    def phase(self) -> str:
        if self.in_warmup():
            return "warmup"
        every = self.config.train.alternate_every
        if every > 0:  # steps counted from the end of the warm-up
            index = (self.step - self.updates.get("warmup", 0)) // every
        else:
            index = self.epoch - self.config.train.restorer_warmup_epochs
        return "restoration" if index % 2 == 0 else "localization"

    def restore(self, distorted: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.networks["restorer"](distorted).float()

    def restoration_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Update D on (plain, restored), then R with L_R; L frozen but differentiable."""
        restorer, discriminator, localizer = (self.networks[k] for k in ("restorer", "discriminator", "localizer"))
        restored = self.restore(batch["distorted"])
        shown = restored.clamp(0, 1)
        losses: dict[str, float] = {}
        if self.use_gan:
            with self._autocast():
                real, fake = discriminator(batch["plain"]).float(), discriminator(shown.detach()).float()
            d_loss = discriminator_loss(real, fake)
            self._update("discriminator", d_loss, "discriminator")
            losses["discriminator"] = d_loss.item()
        # As the release: only the localizer is put in eval mode; the discriminator stays in
        # train mode (its BatchNorm uses the batch's statistics), parameters frozen.
        with frozen(localizer), frozen(discriminator, eval_mode=False), self._autocast():
            fake_logits = discriminator(shown).float() if self.use_gan else None
            loc_logits = segmentation_logits(localizer(shown)).float() if self.use_localization else None
        terms = restoration_loss(restored, batch["plain"], fake_logits, loc_logits, batch["mask"], self.weights)
        self._update("restorer", terms["total"], "restoration")
        if self.use_gan:  # its running statistics moved in train mode: keep the processes equal
            self.dist.broadcast_buffers(discriminator)
        losses.update({("restoration" if k == "total" else f"restoration_{k}"): v.item() for k, v in terms.items()})
        return losses

    def warmup_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Update R with the MAE term alone (no discriminator, no localizer)."""
        mae = mae_loss(self.restore(batch["distorted"]), batch["plain"])
        self._update("restorer", self.weights.mae * mae, "restoration warm-up")
        self.updates["warmup"] = self.updates.get("warmup", 0) + 1
        return {"restoration": self.weights.mae * mae.item(), "restoration_mae": mae.item()}

    def localization_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Update L on restored images; R frozen."""
        with frozen(self.networks["restorer"]), torch.no_grad():
            restored = self.restore(batch["distorted"]).clamp(0, 1)
        with self._autocast():
            logits = segmentation_logits(self.networks["localizer"](restored)).float()
        loss = localization_loss(logits, batch["mask"], self.weights)
        self._update("localizer", loss, "localization")
        return {"localization": loss.item()}

    def train_step(self, batch: dict) -> dict[str, float]:
        batch = self.to_device(batch)
        phase = self.phase()
        if phase == "warmup":
            return self.warmup_step(batch)
        if phase == "restoration":
            return self.restoration_step(batch)
        return self.localization_step(batch)

    def validation_batch(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], torch.Tensor]:
        restored = self.restore(batch["distorted"])
        shown = restored.clamp(0, 1)
        with self._autocast():
            loc_logits = segmentation_logits(self.networks["localizer"](shown)).float()
            fake_logits = self.networks["discriminator"](shown).float() if self.use_gan else None
        terms = restoration_loss(
            restored,
            batch["plain"],
            fake_logits,
            loc_logits if self.use_localization else None,
            batch["mask"],
            self.weights,
        )
        losses = {
            "localization": localization_loss(loc_logits, batch["mask"], self.weights).item(),
            "restoration": terms["total"].item(),
            "psnr_restored": psnr(restored, batch["plain"]).mean().item(),
            "psnr_distorted": psnr(batch["distorted"], batch["plain"]).mean().item(),
        }
        return losses, torch.sigmoid(loc_logits)


class JointTask(ReLocTask):
    """All three networks updated every step (Table II's joint training)."""

    def phase(self) -> str:
        return "warmup" if self.in_warmup() else "joint"

    def train_step(self, batch: dict) -> dict[str, float]:
        batch = self.to_device(batch)
        if self.phase() == "warmup":
            return self.warmup_step(batch)
        losses = self.restoration_step(batch)
        losses.update(self.localization_step(batch))
        return losses


TASK_CLASSES: dict[str, type[Task]] = {
    "plain": PlainTask,
    "finetune": FinetuneTask,
    "reloc": ReLocTask,
    "joint": JointTask,
}


def create_task(config: Config, device: torch.device, dist: DistContext) -> Task:
    """The task object of ``config.train.task``."""
    return TASK_CLASSES[config.train.task](config, device, dist)
