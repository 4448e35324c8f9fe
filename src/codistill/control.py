"""The control arm (`conf/control/`): the same student trained without the teacher, so a run's summary
says what distillation bought (codistill.eval.standings.gap_closed)."""

import copy
import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


def control_config(cfg: DictConfig, distils: bool) -> DictConfig | None:
    """The control arm's config: `cfg` with `cfg.control` merged over it, into <output_dir>/control; None
    without a control, in a sweep, or where the run learns nothing from the teacher (`distils` false and the
    ground truth as labels: the control would be the run)."""
    if not cfg.get("control"):
        return None
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        log.info("no control arm in a sweep: its jobs are compared with one another (add loss=label_only to it)")
        return None
    if not distils and OmegaConf.select(cfg, "data.label_source") != "teacher":
        log.info("no control arm: this run learns nothing from the teacher (it is its own control)")
        return None
    arm = copy.deepcopy(cfg)
    with open_dict(arm):  # the control may set keys the run's loss config lacks (loss.ce_weight of label_only)
        arm.merge_with(cfg.control)
        arm.control = arm.ckpt_path = None  # a resumed run's checkpoint is the student's, not its control's
        arm.paths.output_dir = str(Path(cfg.paths.output_dir) / "control")
    return arm
