"""The model repository: specs rendered to validated ``config.pbtxt``, checked, scaffolded.

* ``render``: ``ModelSpec`` → Triton ``ModelConfig`` (per-GPU instance groups).
* ``queue_policy``: the batcher's queue policy, derived from the latency budget.
* ``checks``: lint a repository, one precise ``Problem`` per mistake (a registry of families).
* ``checkpoint``: what the renderer and checker read from a checkpoint.
* ``scaffold``: ``add_model`` writes a complete, checked model folder (importing its checkpoint).
* ``writer``: atomic writes, and re-rendering ``gpus: "all"`` models for this machine.
* ``machine``: cores and GPU ids of this machine.
"""

from ds_triton.repository.checks import Problem, check_model, check_repository
from ds_triton.repository.machine import Machine, detect_gpu_ids
from ds_triton.repository.render import config_text, instance_groups, render_config
from ds_triton.repository.scaffold import AddedModel, AddModelError, add_model
from ds_triton.repository.writer import render_folder, resolve_gpus_for_serving

__all__ = [
    "AddModelError",
    "AddedModel",
    "Machine",
    "Problem",
    "add_model",
    "check_model",
    "check_repository",
    "config_text",
    "detect_gpu_ids",
    "instance_groups",
    "render_config",
    "render_folder",
    "resolve_gpus_for_serving",
]
