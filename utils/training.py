"""Training: phase 1 CNN from scratch, phase 2a transformer on the frozen CNN, phase 2b end-to-end fine-tuning.

Model selection uses the validation split only (best validation AUC per phase). Saves `.keras` then `.h5`
(saving `.h5` strips the optimizer from the model in place, so the native file is written first), and beside
them the operating point chosen on validation authentic patches (`NAME.operating_point.json`).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

from .architectures import (build_cnn, build_comparing_vit, build_hybrid_vit, cnn_layer_names, stem_filters,
                            stem_padding)
from .data import DESIGNS, augment, load_split
from .quiet import quiet_logs


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved as models/train_config.json).

    Args:
        data_dir: corpus folder with train/ and val/ (and test/).
        models_dir: where models and histories go.
        image_size: patch side the models take; None (default): the corpus's own patch side, as stored (resizing
            would change the forensic traces).
        batch_size: images per step.
        cnn_epochs, vit_epochs, finetune_epochs: epoch limits of phases 1, 2a and 2b (0 skips a phase).
        cnn_lr, vit_lr, finetune_lr: AdamW learning rates per phase.
        weight_decay: AdamW weight decay.
        patience: epochs without a better validation AUC before a phase stops.
        filters: CNN widths per stage.
        stem_padding: the CNN's convolutions: 'valid' (no padding, 4x4 tokens for 64 px; a scan runs the stem once
            per slice, `scan.SharedStem`) or 'same' (zero padding, 8x8 tokens; the previous default).
        dim, depth, heads, mlp_dim, dropout: transformer size.
        augment: flips, 90-degree rotations and small shifts on training batches.
        max_train: cap on training patches (quick runs), None for all.
        seed: seeds Keras, NumPy and the batch order.
        data_parallel: split every batch over all local devices with Keras' distribution API
            (`keras.distribution.DataParallel`; JAX backend, e.g. several GPUs). Same maths as one device.
        pretrain_epochs: epochs of self-supervised pre-training of the transformer on the frozen CNN's tokens
            (masked-token modelling on the training split's authentic patches, `utils.pretraining`) before
            phase 2a; 0 = none, phase 2a starts from random weights.
        pretrain_lr, mask_ratio: its learning rate and the share of tokens masked.
        pretrain_dicom: folders of authentic DICOM (any scanner, no labels) whose random lung patches join the
            pre-training patches (`authentic.authentic_patches`). Keep a false-alarm test's scanners out of it.
        vit_init: a saved pre-training model (`models/vit_pretrained.keras`) to start phase 2a from instead
            (same transformer sizes), when pretrain_epochs is 0.
        design: the phase-2 model: 'patch' (`build_hybrid_vit`, the patch alone), 'compare'
            (`build_comparing_vit`: the patch and a reference window of its slice, attended across; the corpus
            must hold reference windows), 'compare-normalised' (the same, tokens normalised by the reference's
            mean and spread, `ReferenceNorm`) or 'compare-centred' (its mean subtracted only). The phase-1 CNN
            reads the patch alone in all of them.
        hard_negative_epochs: epochs of phase "hard" after 2b (0 = none): the hybrid scans the corpus's training
            and validation slices, and the authentic windows it scores highest (`hard_negatives`) join the training
            and validation splits as authentic patches; the corpus must be a generated one (corpus.json).
        hard_negatives_per_slice: windows kept per scanned slice (those scoring at least 0.5, 32 px apart).
        hard_negative_dicom: folders of authentic DICOM (any scanner, no labels) whose slices are mined too, for
            the training split. Keep a false-alarm test's patients out of it.
        weight_average: momentum of an exponential moving average of the weights over training steps (Polyak
            averaging, `AveragedWeights`; e.g. 0.98 averages about the last 50 steps); every phase then validates
            and keeps the averaged weights. 0 = off (the raw weights of the best epoch).
        slice_calibration: authentic synthetic slices (validation split, topped up with held-out scans) on which
            each saved model's slice operating points for `scan` are chosen (`calibration`); 0 = none. Needs a
            generated corpus (corpus.json); for real data run `calibrate --authentic`.
        members: models per detector; above 1, each phase trains this many with seeds seed, seed + 1, ...
            (`models_dir/members/K/`) and saves their seed ensemble (`ensemble.build_ensemble`: the mean of their
            fake probabilities, one model file) where a single model would go, with its own operating points.
    """

    data_dir: str = "data"
    models_dir: str = "models"
    image_size: int | None = None
    batch_size: int = 128
    cnn_epochs: int = 10
    vit_epochs: int = 5
    finetune_epochs: int = 4
    cnn_lr: float = 1e-3
    vit_lr: float = 1e-3
    finetune_lr: float = 1e-4
    weight_decay: float = 1e-4
    patience: int = 4
    filters: tuple = (16, 32, 64)
    stem_padding: str = "valid"
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 128
    dropout: float = 0.1
    augment: bool = True
    max_train: int | None = None
    seed: int = 0
    data_parallel: bool = False
    pretrain_epochs: int = 0
    pretrain_lr: float = 1e-3
    mask_ratio: float = 0.5
    pretrain_dicom: tuple = ()
    vit_init: str | None = None
    design: str = "patch"
    hard_negative_epochs: int = 0
    hard_negatives_per_slice: int = 2
    hard_negative_dicom: tuple = ()
    weight_average: float = 0.0
    slice_calibration: int = 200
    members: int = 1
    extra: dict = field(default_factory=dict)

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best monitored validation value and restores them at the end;
    stops after `patience` epochs without improvement."""

    def __init__(self, monitor="val_auc", mode="max", patience=3):
        super().__init__()
        self.monitor, self.sign, self.patience = monitor, (1 if mode == "max" else -1), patience

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch, self.weights, self.wait = -np.inf, -1, None, 0

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(f"BestWeights monitors {self.monitor!r}, which the logs lack: {sorted(logs or {})}")
        if self.sign * value > self.best:
            self.best, self.best_epoch, self.wait = self.sign * value, epoch, 0
            self.weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)


class AveragedWeights(keras.callbacks.Callback):
    """An exponential moving average of the weights over training steps, validated as such.

    At each epoch's end the model holds the averaged weights and the logs' `val_auc` is theirs (the raw
    weights' value moves to `val_auc_raw`), so a `BestWeights` listed after this callback selects among averages;
    the raw weights come back when the next epoch starts. The average's momentum is warmed up,
    min(momentum, (1 + t) / (10 + t)) at step t, so the first steps do not dominate it.

    Args:
        val: (x, y) validation patches.
        momentum: share of the average kept per step (0.98 averages about the last 50 steps).
        batch_size: prediction batch of the validation pass.
    """

    def __init__(self, val, momentum: float = 0.98, batch_size: int = 256):
        super().__init__()
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"momentum must lie in (0, 1), got {momentum}")
        self.val, self.momentum, self.batch_size = val, momentum, batch_size

    def on_train_begin(self, logs=None):
        self.average, self.raw, self.steps = [w.astype(np.float32) for w in self.model.get_weights()], None, 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.raw is not None:
            self.model.set_weights(self.raw)
            self.raw = None

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        m = min(self.momentum, (1 + self.steps) / (10 + self.steps))
        for avg, w in zip(self.average, self.model.get_weights()):
            avg *= m
            avg += (1 - m) * w

    def on_epoch_end(self, epoch, logs=None):
        from sklearn.metrics import roc_auc_score

        self.raw = self.model.get_weights()
        self.model.set_weights([a.astype(r.dtype) for a, r in zip(self.average, self.raw)])
        x, y = self.val
        scores = predict_scores(self.model, x, self.batch_size)
        if logs is not None:
            logs["val_auc_raw"] = logs.get("val_auc")
            logs["val_auc"] = float(roc_auc_score(y, scores)) if len(np.unique(y)) > 1 else 0.5


def make_batches(x, y, batch_size=64, shuffle=True, augment_batches=False, seed=0, drop_remainder=False):
    """A Keras PyDataset over in-memory arrays; reshuffles (and augments) every epoch. `drop_remainder` leaves
    out the last partial batch of each epoch (data-parallel steps need full batches; the order changes per epoch,
    so no image is always left out)."""

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

        def __len__(self):
            return int(len(x) // batch_size if drop_remainder else np.ceil(len(x) / batch_size))

        def __getitem__(self, i):
            idx = np.sort(self.order[i * batch_size : (i + 1) * batch_size])
            xb = x[idx]
            return (augment(xb, self.rng) if augment_batches else xb), y[idx].astype(np.float32)

        def on_epoch_end(self):
            if shuffle:
                self.order = self.rng.permutation(len(x))

    return Batches()


def class_weights(y) -> dict:
    counts = np.bincount(np.asarray(y, int), minlength=2).astype(float)
    if (counts == 0).any():
        raise ValueError(f"the training split needs both classes (real, fake); it has counts {counts.tolist()}")
    return {i: float(counts.sum() / (2 * c)) for i, c in enumerate(counts)}


def compile_model(model, lr, weight_decay, decay_steps: int | None = None):
    """AdamW (cosine-decayed over `decay_steps` when given), binary cross-entropy, accuracy and AUC."""
    if decay_steps:
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=weight_decay),
                  loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")])
    return model


def fit_phase(model, train, val, epochs, lr, cfg: TrainConfig, name: str, verbose=1) -> dict:
    """One training phase (compiles the model: cosine-decayed AdamW from `lr`) with validation-AUC model
    selection. Returns its history, best epoch, seconds and training images per second."""
    (x, y), (xv, yv) = train, val
    parallel = data_parallel_active()
    batches = make_batches(x, y, cfg.batch_size, True, cfg.augment, cfg.seed, drop_remainder=parallel)
    compile_model(model, lr, cfg.weight_decay, decay_steps=len(batches) * epochs)
    keeper = BestWeights("val_auc", "max", cfg.patience)
    callbacks = [keeper]
    if cfg.weight_average:
        callbacks.insert(0, AveragedWeights((xv, yv), cfg.weight_average))
    xv, yv, wv = pad_to_multiple(xv, yv.astype(np.float32), cfg.batch_size if parallel else 1)
    start = time.perf_counter()
    hist = model.fit(batches, epochs=epochs, validation_data=(xv, yv, wv), validation_batch_size=cfg.batch_size,
                     class_weight=class_weights(y), callbacks=callbacks, verbose=verbose)
    out = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    out.update(phase=name, best_epoch=keeper.best_epoch + 1, seconds=round(time.perf_counter() - start, 1),
               images_per_second=round(len(x) * len(out.get("loss", [])) / max(time.perf_counter() - start, 1e-9), 1))
    return out


def pad_to_multiple(x, y, k: int):
    """(x, y, weights) padded with zero-weight copies of the first image to a multiple of k (full batches for
    data-parallel evaluation; weight 0 keeps the padding out of every loss and metric)."""
    w = np.ones(len(x), np.float32)
    extra = (-len(x)) % k
    if extra:
        x = np.concatenate([x, np.repeat(x[:1], extra, axis=0)])
        y = np.concatenate([y, np.repeat(y[:1], extra, axis=0)])
        w = np.concatenate([w, np.zeros(extra, np.float32)])
    return x, y, w


def data_parallel_active() -> bool:
    """True when `use_data_parallel` has set a Keras distribution (JAX backend only)."""
    return keras.backend.backend() == "jax" and keras.distribution.distribution() is not None


def predict_scores(model, x, batch_size: int = 256) -> np.ndarray:
    """Fake scores of an in-memory batch; padded to full batches when a data-parallel distribution is active."""
    xp, _, _ = pad_to_multiple(x, np.zeros(len(x)), batch_size if data_parallel_active() else 1)
    with quiet_logs("tensorflow"):  # each split's last batch is a shape of its own, traced once
        return np.asarray(model.predict(xp, batch_size=batch_size, verbose=0)).ravel()[: len(x)]


def set_cnn_trainable(model, trainable: bool) -> None:
    for name in cnn_layer_names(model):
        model.get_layer(name).trainable = trainable


def save_model(model, models_dir, stem) -> dict:
    """`stem.keras` first, then `stem.h5` (which strips the optimizer in place)."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    native, legacy = models_dir / f"{stem}.keras", models_dir / f"{stem}.h5"
    model.save(native)
    with quiet_logs("absl"):  # the legacy format is written on purpose, beside the native one
        model.save(legacy)
    return {"keras": str(native), "h5": str(legacy)}


def store_patch_operating_point(model, val, model_path, rate: float = 0.05, where: str = "") -> dict:
    """Choose the patch threshold on the validation split's authentic patches (1% and 5% false alarms, and
    `rate`, the one used) and write it beside the saved model (`utils.operating_point`)."""
    from .operating_point import operating_point, save_operating_point

    xv, yv = val
    scores = predict_scores(model, xv[yv == 0])
    point = operating_point(scores, f"{len(scores)} validation authentic patches{where}", rate)
    save_operating_point(model_path, "patch", point)
    model.operating_point = {**(getattr(model, "operating_point", None) or {}), "patch": point}
    return point


def use_data_parallel(batch_size: int) -> int:
    """Make Keras split every batch over all local devices (models built afterwards are replicated).
    Returns the device count. JAX backend only: Keras' distribution API does not cover TensorFlow here."""
    if keras.backend.backend() != "jax":
        raise NotImplementedError("data-parallel training uses keras.distribution, which needs KERAS_BACKEND=jax "
                                  f"(current backend: {keras.backend.backend()})")
    devices = keras.distribution.list_devices()
    if batch_size % len(devices):
        raise ValueError(f"batch size {batch_size} does not split over {len(devices)} devices")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return len(devices)


NORMALISE = {"compare": None, "compare-normalised": "scale", "compare-centred": "centre"}


def load_training_data(cfg: TrainConfig):
    """Training and validation arrays; (N, H, W, 2) patch + reference pairs for the 'compare' design."""
    if cfg.design not in DESIGNS:
        raise ValueError(f"unknown design {cfg.design!r}: use one of {DESIGNS}")
    data = {}
    for split in ("train", "val"):
        x, y, _ = load_split(Path(cfg.data_dir) / split, cfg.image_size, reference=cfg.design != "patch")
        data[split] = (x, y)
    if cfg.max_train and len(data["train"][0]) > cfg.max_train:
        rng = np.random.default_rng(cfg.seed)
        idx = np.sort(rng.choice(len(data["train"][0]), cfg.max_train, replace=False))
        data["train"] = (data["train"][0][idx], data["train"][1][idx])
    return data


def patch_arrays(data: dict, design: str) -> dict:
    """The splits' patch channel alone (what the phase-1 CNN reads): `data` itself for the 'patch' design, the
    first channel of the patch + reference pairs of a comparing one."""
    return data if design == "patch" else {k: (x[..., :1], y) for k, (x, y) in data.items()}


def pretraining_patches(cfg: TrainConfig, authentic_train) -> np.ndarray:
    """The training split's authentic patches plus random lung patches of `cfg.pretrain_dicom` (no labels)."""
    if not cfg.pretrain_dicom:
        return authentic_train
    from .authentic import authentic_patches
    from .data import to_model_input

    extra = [to_model_input(p.image.astype(np.float32) / 255.0, cfg.image_size, authentic_train.shape[-1])
             for root in cfg.pretrain_dicom for p in authentic_patches(root, seed=cfg.seed)]
    return np.concatenate([authentic_train, np.stack(extra).astype(authentic_train.dtype)])


def hard_negative_phase(model, data, cfg: TrainConfig, verbose=1) -> dict:
    """Phase "hard": mine the model's hard negatives on the corpus's training and validation slices
    (`hard_negatives.mine_hard_negatives`), add them to both splits as authentic patches and train on (selection
    on the enlarged validation split). Returns the phase's history with the counts and the mining time."""
    from .hard_negatives import mine_hard_negatives

    start = time.perf_counter()
    grown, mined = {}, {}
    for split in ("train", "val"):
        hard = mine_hard_negatives(model, cfg.data_dir, split, cfg.hard_negatives_per_slice, progress=verbose > 0,
                                   dicom=cfg.hard_negative_dicom if split == "train" else ())
        x, y = data[split]
        grown[split] = (np.concatenate([x, hard.astype(x.dtype)]), np.concatenate([y, np.zeros(len(hard), y.dtype)]))
        mined[split] = len(hard)
    seconds = round(time.perf_counter() - start, 1)
    history = fit_phase(model, grown["train"], grown["val"], cfg.hard_negative_epochs, cfg.finetune_lr, cfg, "hard",
                        verbose)
    history.update(mined=mined, mining_seconds=seconds)
    return history


def cnn_for_size(cnn, input_shape):
    """The phase-1 CNN on another input size, same layers and weights: convolutions, BatchNorm, pooling and the
    global-average head do not depend on the size. E.g. a CNN trained on 64 px patches reading 128 px views, as
    the stem of a transformer over the view's 12x12 feature cells."""
    copy = build_cnn(tuple(input_shape), stem_filters(cnn), cnn.get_layer("dropout").rate,
                     cnn.get_layer("bn1_1").momentum, stem_padding(cnn), name=cnn.name)
    copy.set_weights(cnn.get_weights())
    return copy


def run_training(cfg: TrainConfig, phases=("cnn", "vit"), verbose=1, data=None) -> dict:
    """Run the requested phases ('cnn' = phase 1; 'vit' = phases 2a and 2b) and save models and histories.

    With phases=('vit',) the CNN is loaded from models/cnn_model.keras; when it was trained on another patch size
    than the data's, phase 2 reads the data's size through `cnn_for_size` (and the returned 'cnn' is that copy).
    With `cfg.members` above 1 it trains a seed ensemble (`train_ensemble`).
    Returns paths, histories, models.
    """
    if cfg.members > 1:
        return train_ensemble(cfg, phases, verbose, data)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.data_parallel:
        use_data_parallel(cfg.batch_size)
    data = data or load_training_data(cfg)
    models_dir = Path(cfg.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(models_dir / "train_config.json")
    histories, paths = {}, {}
    compare = cfg.design != "patch"
    patches_only = patch_arrays(data, cfg.design)
    if compare and cfg.pretrain_epochs:
        raise NotImplementedError("pre-training is written for the 'patch' design only")
    if "cnn" in phases:
        cnn = build_cnn(patches_only["train"][0].shape[1:], cfg.filters, padding=cfg.stem_padding)
        histories["cnn"] = fit_phase(cnn, patches_only["train"], patches_only["val"], cfg.cnn_epochs, cfg.cnn_lr,
                                     cfg, "cnn", verbose)
        paths["cnn"] = save_model(cnn, models_dir, "cnn_model")
        store_patch_operating_point(cnn, patches_only["val"], paths["cnn"]["keras"])
    else:
        from .operating_point import load_model

        cnn = load_model(models_dir / "cnn_model.keras")
        if tuple(cnn.inputs[0].shape[1:3]) != tuple(patches_only["train"][0].shape[1:3]):
            cnn = cnn_for_size(cnn, patches_only["train"][0].shape[1:])
    result = {"cnn": cnn}
    if "vit" in phases:
        if compare:  # copies the CNN's weights into a stem of its own
            hybrid = build_comparing_vit(cnn, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_dim, cfg.dropout,
                                         normalise=NORMALISE[cfg.design])
        else:
            stem = keras.models.clone_model(cnn)  # the hybrid fine-tunes its own copy; `cnn` stays phase 1's
            stem.set_weights(cnn.get_weights())
            hybrid = build_hybrid_vit(stem, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_dim, cfg.dropout)
        set_cnn_trainable(hybrid, False)
        if cfg.pretrain_epochs:
            from .pretraining import PRETRAINED, load_transformer_weights, pretrain

            (x, y), (xv, yv) = data["train"], data["val"]
            pretrained, histories["pretrain"] = pretrain(stem, pretraining_patches(cfg, x[y == 0]), xv[yv == 0], cfg,
                                                         verbose)
            paths["pretrained"] = {"keras": str(models_dir / f"{PRETRAINED}.keras")}
            pretrained.save(paths["pretrained"]["keras"])
            load_transformer_weights(hybrid, pretrained)
        elif cfg.vit_init:
            from .pretraining import load_transformer_weights

            load_transformer_weights(hybrid, cfg.vit_init)
        if cfg.vit_epochs:
            histories["vit"] = fit_phase(hybrid, data["train"], data["val"], cfg.vit_epochs, cfg.vit_lr, cfg,
                                         "vit", verbose)
        set_cnn_trainable(hybrid, True)
        if cfg.finetune_epochs:
            histories["finetune"] = fit_phase(hybrid, data["train"], data["val"], cfg.finetune_epochs,
                                              cfg.finetune_lr, cfg, "finetune", verbose)
        else:
            compile_model(hybrid, cfg.finetune_lr, cfg.weight_decay)
        if cfg.hard_negative_epochs:
            if compare:
                raise NotImplementedError("hard-negative mining is written for the 'patch' design only")
            histories["hard"] = hard_negative_phase(hybrid, data, cfg, verbose)
        paths["hybrid"] = save_model(hybrid, models_dir, "deepfake_detection_model")
        store_patch_operating_point(hybrid, data["val"], paths["hybrid"]["keras"])
        result["hybrid"] = hybrid
    calibrate_slices({paths[name]["keras"]: result[name] for name in ("cnn", "hybrid") if name in paths}, cfg,
                     verbose)
    for name, hist in histories.items():
        (models_dir / f"history_{name}.json").write_text(json.dumps(hist, indent=1) + "\n")
    result.update(paths=paths, histories=histories)
    return result


def calibrate_slices(saved: dict, cfg: TrainConfig, verbose=1) -> None:
    """The slice operating points of the saved models ({path: model}) on `cfg.slice_calibration` slices."""
    if not saved or not cfg.slice_calibration:
        return
    from .calibration import store_slice_operating_points
    from .operating_point import spread_line

    start = time.perf_counter()
    points = store_slice_operating_points(saved, cfg.data_dir, cfg.slice_calibration)
    for path, point in points.items():
        if verbose:
            print(f"{Path(path).name}: slice threshold {point['slice']['threshold']:.4f} "
                  f"({point['slice']['false_alarm_rate']:.0%} of {point['slice']['chosen_on']}; "
                  f"{time.perf_counter() - start:.0f} s in all); {spread_line(point['slice'])}")


def train_ensemble(cfg: TrainConfig, phases=("cnn", "vit"), verbose=1, data=None) -> dict:
    """`run_training` for each of `cfg.members` seeds (seed, seed + 1, ...; `models_dir/members/K/`, all on the same
    data), then the seed ensembles of their CNNs and of their hybrids (`ensemble.build_ensemble`) saved as
    `cnn_model` and `deepfake_detection_model` in `models_dir`, with operating points chosen for the ensemble.
    Returns what `run_training` returns, the ensembles as models and histories keyed 'PHASE, seed S'."""
    from .ensemble import build_ensemble

    data = data or load_training_data(cfg)
    models_dir = Path(cfg.models_dir)
    runs = []
    for k in range(cfg.members):
        member = replace(cfg, seed=cfg.seed + k, members=1, slice_calibration=0,
                         models_dir=str(models_dir / "members" / str(k)))
        if verbose:
            print(f"member {k + 1} of {cfg.members} (seed {member.seed})")
        runs.append(run_training(member, phases, verbose, data))
    cfg.save(models_dir / "train_config.json")
    patches_only = patch_arrays(data, cfg.design)
    result, paths, saved = {}, {}, {}
    for name, stem, phase, val in (("cnn", "cnn_model", "cnn", patches_only["val"]),
                                   ("hybrid", "deepfake_detection_model", "vit", data["val"])):
        if name not in runs[0]:
            continue
        result[name] = build_ensemble([run[name] for run in runs], name=f"{name}_ensemble")
        if phase in phases:
            paths[name] = save_model(result[name], models_dir, stem)
            store_patch_operating_point(result[name], val, paths[name]["keras"])
            saved[paths[name]["keras"]] = result[name]
        else:  # saved by an earlier call, with its operating points
            from .operating_point import load_operating_point

            result[name].operating_point = load_operating_point(models_dir / f"{stem}.keras")
    calibrate_slices(saved, cfg, verbose)
    histories = {f"{phase}, seed {cfg.seed + k}": hist for k, run in enumerate(runs)
                 for phase, hist in run["histories"].items()}
    result.update(paths=paths, histories=histories, members=runs)
    return result
