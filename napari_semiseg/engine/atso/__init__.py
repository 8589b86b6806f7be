"""ATSO, asynchronous teacher–student optimisation (Huo et al., CVPR 2021), and its baselines.

A schedule of generations over the pseudo-labelling pipeline and the trainer (docs/METHODS.md §5):

1. M0 is trained on the labelled set S (supervised);
2. the unlabelled ("reference") set R is split into two folds R1, R2, fixed for the whole run
   (seeded, recorded: ``split_folds``);
3. each generation pseudo-labels R1 with the model fine-tuned on R2 in the previous
   generation and R2 with the one fine-tuned on R1 (M0 for both in generation 1), then
   re-initialises both students from M0 and fine-tunes one on S ∪ R1, the other on S ∪ R2;
4. after the last generation its students label the opposite folds once more, and a final
   model (from M0's weights) is fine-tuned on S ∪ R1 ∪ R2; it is registered and activated.

So no model ever pseudo-labels a case it was fine-tuned on. The baselines of the paper's
Table 1 run the same way without the split: ``"self-learning"`` (the student continues from
its own weights and labels R itself) and ``"stso"`` (re-initialised from M0 each generation).
``_schedule`` documents the exact plan and how it reads the paper's Algorithm 1.

Usage::

    config = AtsoConfig(load_card("cpu-small"), generations=2, iterations_m0=300,
                        iterations_generation=150)
    result = run_atso(project, config, progress=print)
    print(result.report.dice_table())

Every model is a project model version (parent: the model it started from), every
pseudo-label a "pseudo" label version recording the model that made it; the report
(``report.json`` in ``runs/atso-<run id>/`` and the project's run record) gives, per
generation and model, the pseudo-label Dice on every reference case that has a reference
(the "lazy mimicking" diagnostic), and the fingerprint of the weights each model really
started from.
"""

from ._cases import AtsoCases, choose_cases, reference_label
from ._config import FINAL_INITS, MODES, AtsoConfig, AtsoError
from ._folds import ALL_FOLDS, FOLD_1, FOLD_2, Folds, split_folds
from ._progress import STEPS, AtsoProgress, AtsoProgressCallback
from ._report import REPORT_FILE, AtsoReport, LabellingRecord, ModelRecord, PseudoLabelRecord
from ._runner import RUN_KIND, AtsoResult, run_atso
from ._schedule import (FINAL, M0, SCRATCH, Generation, Labelling, Schedule, Training, check_asynchronous,
                        make_schedule)
from ._weights import StartWeightsProbe, model_file_sha256, state_dict_sha256

__all__ = [
    "ALL_FOLDS", "AtsoCases", "AtsoConfig", "AtsoError", "AtsoProgress", "AtsoProgressCallback", "AtsoReport",
    "AtsoResult", "FINAL", "FINAL_INITS", "FOLD_1", "FOLD_2", "Folds", "Generation", "LabellingRecord", "M0",
    "MODES", "ModelRecord", "PseudoLabelRecord", "REPORT_FILE", "RUN_KIND", "SCRATCH", "STEPS", "Schedule",
    "StartWeightsProbe", "Training", "Labelling", "check_asynchronous", "choose_cases", "make_schedule",
    "model_file_sha256", "reference_label", "run_atso", "split_folds", "state_dict_sha256",
]
