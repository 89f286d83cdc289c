"""Operating points: decision thresholds chosen on validation authentic data, stored beside the model.

A model file `models/NAME.keras` (or `.h5`) has its thresholds in `models/NAME.operating_point.json`:

    {"patch": {"threshold": 0.83, "false_alarm_rate": 0.05, "thresholds": {"0.01": ..., "0.05": ...},
               "n_authentic": 612, "chosen_on": "..."},
     "relative": {...}}

A slice point records the grid step its slices were scanned at (`"stride"`, px), and one chosen with `calibrate
--symmetries N` also `"symmetries": N`, the number of the square's flips and quarter turns each window's score was
averaged over; `scan` then scans that way (`model_stride`, `model_symmetries`), so that the threshold and the scores
it judges are alike: a finer grid offers a slice more windows, and its best window scores higher.

`patch` is for one patch score (`evaluate`, the notebook), chosen on the validation split's authentic patches.
`slice` is for `scan`'s verdict, the best window's score of a slice, and `relative` for that of `scan --relative`
(the best window's score minus the slice's median): a slice is judged by its best of hundreds of windows, a
maximum whose false-alarm rate one patch's threshold does not set, so both are chosen on whole authentic slices
(`utils.calibration`: by training on authentic synthetic slices no model saw, or by `calibrate --authentic` on
series of the user's own scanners). `scan` falls back to the patch threshold only for a model stored without
a slice threshold.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DEFAULT_RATE = 0.05
RATES = (0.01, 0.05)
STRIDE = 16  # `scan`'s grid step, px, for a model whose slice operating point does not record one
SYMMETRY_GROUPS = (1, 2, 4, 8)  # how many of the square's symmetries a window can be averaged over (`scan.DIHEDRAL`)


def sidecar_path(model_path) -> Path:
    return Path(model_path).with_suffix(".operating_point.json")


def threshold_at_false_alarm_rate(authentic_scores, rate: float = DEFAULT_RATE) -> float:
    """The lowest threshold at which at most `rate` of these authentic scores are flagged (score >= threshold)."""
    s = np.sort(np.asarray(authentic_scores, np.float32))[::-1]  # float32: the step above is exact in both widths
    if s.size == 0:
        raise ValueError("no authentic scores to choose a threshold on")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"false-alarm rate must lie in [0, 1), got {rate}")
    k = int(np.floor(rate * s.size))  # at most k flagged: the threshold sits just above the (k+1)-th highest
    return float(np.nextafter(s[k], np.float32(np.inf)))


def operating_point(authentic_scores, chosen_on: str, rate: float = DEFAULT_RATE) -> dict:
    """Thresholds at 1% and 5% (and `rate`) false alarms on these authentic scores."""
    thresholds = {f"{r:g}": threshold_at_false_alarm_rate(authentic_scores, r) for r in sorted({*RATES, rate})}
    return {"threshold": thresholds[f"{rate:g}"], "false_alarm_rate": rate, "thresholds": thresholds,
            "n_authentic": int(np.size(authentic_scores)), "chosen_on": chosen_on}


def series_spread(authentic_scores, series, rate: float = DEFAULT_RATE, draws: int = 1000, level: float = 0.9,
                  seed: int = 0) -> dict:
    """How much a slice threshold rests on a few series. Slices of one series share its scanner and anatomy, so
    their scores go up and down together and a threshold chosen on slices is, in effect, chosen on series. Returns
    the number of series, how many of them hold the flagged slices at the threshold for `rate`, and the threshold's
    `level` interval when the series are drawn again with replacement (`draws` bootstrap draws, seeded)."""
    from .evaluate import _group_members, _resamples  # the scan-level bootstrap of the evaluation's intervals

    scores, series = np.asarray(authentic_scores, np.float32), np.asarray(series)
    t = threshold_at_false_alarm_rate(scores, rate)
    members = _group_members(series, len(series))
    boot = [threshold_at_false_alarm_rate(scores[idx], rate) for idx in _resamples(members, draws, seed)]
    tail = (1 - level) / 2
    return {"series": len(members), "flagged_series": int(len(np.unique(series[scores >= t]))),
            "threshold_interval": [float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))],
            "interval_level": level}


def spread_line(point: dict) -> str:
    """One sentence on how far a stored slice threshold rests on a few series (`series_spread`); '' without."""
    if "flagged_series" not in point:
        return ""
    lo, hi = point["threshold_interval"]
    return (f"the slices flagged at {point['threshold']:.4f} come from {point['flagged_series']} of "
            f"{point['series']} series; drawn again by series, the threshold lies in [{lo:.4f}, {hi:.4f}] "
            f"({point['interval_level']:.0%})")


def series_threshold(point: dict, n_slices: int) -> float:
    """The best slice's score at or above which a series of `n_slices` scanned slices is called tampered.

    A series is flagged when any of its slices is, so one slice's threshold would flag far more than its rate of
    authentic series. This one flags `false_alarm_rate / n_slices` of the authentic slices the point was chosen
    on (`authentic_scores`, stored with slice points): by the union bound at most about `false_alarm_rate` of
    authentic series, fewer when neighbouring slices score alike. Once that share falls below one of the N
    calibration slices it is the highest calibration score, and then a series of n slices whose scores were
    independent draws like the calibration ones would be flagged with probability n / (n + N). One slice, or a
    point without stored scores: the point's own threshold."""
    scores = point.get("authentic_scores")
    if not scores or n_slices <= 1:
        return float(point["threshold"])
    return max(float(point["threshold"]), threshold_at_false_alarm_rate(scores, point["false_alarm_rate"] / n_slices))


def series_note(point: dict, n_slices: int) -> str | None:
    """What `series_threshold` cannot promise for a series this long, or None when it holds its rate: with fewer
    than n / rate calibration slices the threshold sits just above the highest of them, and a series whose slices
    scored like independent calibration slices would be flagged with probability up to n / (n + N)."""
    scores, rate = point.get("authentic_scores"), point.get("false_alarm_rate", DEFAULT_RATE)
    if not scores or n_slices <= 1 or rate / n_slices * len(scores) >= 1:
        return None
    needed, n_cal = int(np.ceil(n_slices / rate)), len(scores)
    share = n_slices / (n_slices + n_cal)
    return (f"a {rate:.0%} threshold for a series of {n_slices} slices needs {needed} calibration slices; this one "
            f"rests on {n_cal}, so it sits just above their highest score, and up to {share:.0%}"
            f" of authentic series this long may be flagged (fewer when neighbouring slices score alike); `calibrate "
            f"--slices {needed}` (or `--authentic` with that many slices) chooses it on enough")


def texture_note(point: dict, level: float | None) -> str | None:
    """A note when a series' fine texture (`level`, HU: the median over its slices of `scan.SliceResult.fine_band`)
    is louder than the slices its thresholds were chosen on (the 95th percentile stored as the point's
    `fine_band`), else None: at such levels neither verdict means what it means on the slices it was chosen on."""
    band = point.get("fine_band")
    if not band or level is None or level <= band[-1]:
        return None
    return (f"the series' fine texture ({level:.0f} HU, median over its slices) is louder than 95% of the slices "
            f"its thresholds were chosen on ({band[-1]:.0f} HU): on other scanners' authentic slices brought to such "
            "levels the 5% threshold flagged up to twice its rate, and the development set's tampered slices louder "
            "than 60 HU were missed, so either verdict is weaker evidence here (benchmarks/README.md, *How noisy may "
            "an unseen scanner be*)")


def save_operating_point(model_path, kind: str, point: dict) -> Path:
    """Store `point` under `kind` ('patch', 'slice' or 'relative') in the model's sidecar, keeping the others."""
    path = sidecar_path(model_path)
    stored = load_operating_point(model_path)
    stored[kind] = point
    path.write_text(json.dumps(stored, indent=1) + "\n")
    return path


def load_operating_point(model_path) -> dict:
    """The model's stored operating points ({} when none was stored)."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a valid operating-point file ({err})") from err


def stored_threshold(model_path, kind: str = "patch", default: float | None = 0.5) -> tuple[float, str]:
    """(threshold, where it came from) for a saved model: its stored operating point, else `default`."""
    point = load_operating_point(model_path).get(kind) if model_path else None
    if point:
        return float(point["threshold"]), (f"{kind} operating point of {Path(model_path).name} "
                                           f"({point['false_alarm_rate']:.0%} false alarms on {point['chosen_on']})")
    if default is None:
        raise ValueError(f"{model_path}: no stored {kind} operating point ({sidecar_path(model_path).name}); "
                         "run `python -m utils.cli calibrate` or pass --threshold")
    return float(default), f"default {default} (no operating point stored beside the model)"


def load_model(path, compile: bool = False):
    """`keras.models.load_model` (safe mode on) with the custom layers registered and the stored operating points
    attached as `model.operating_point` ({} when none is stored): `evaluate_on_testset(model, ...)` and the
    scanner then use the stored threshold without further steps."""
    import keras

    from . import layers  # noqa: F401  (registers the custom layers)

    model = keras.models.load_model(path, compile=compile)
    model.operating_point = load_operating_point(path)
    return model


def model_symmetries(model) -> int:
    """How many of the square's symmetries `scan` averages each window's score over for this model
    (`scan.DIHEDRAL`): the number its stored slice operating point was chosen with, else 1."""
    point = (getattr(model, "operating_point", None) or {}).get("slice") or {}
    return int(point.get("symmetries", 1))


def model_stride(model) -> int:
    """The grid step (px) `scan` places its windows at for this model: the one its stored slice operating point was
    chosen at, else `STRIDE`."""
    point = (getattr(model, "operating_point", None) or {}).get("slice") or {}
    return int(point.get("stride", STRIDE))


def model_threshold(model, kind: str = "patch", default: float = 0.5) -> float:
    """The threshold attached to a model by `load_model` (or set by training), else `default`."""
    point = (getattr(model, "operating_point", None) or {}).get(kind)
    return float(point["threshold"]) if point else float(default)
