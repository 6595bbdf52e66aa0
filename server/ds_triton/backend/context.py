"""What Triton tells an instance in ``initialize(args)``, parsed once and typed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ds_triton.devices import Placement, instance_count, resolve_placement
from ds_triton.errors import SpecError
from ds_triton.spec import ModelSpec


@dataclass(frozen=True)
class InstanceContext:
    """One model instance: its config, folders, device and the spec it serves."""

    model_name: str
    instance_name: str
    model_config: dict[str, Any]
    version_dir: Path
    spec: ModelSpec
    placement: Placement

    @classmethod
    def from_args(cls, args: dict[str, str]) -> InstanceContext:
        model_config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        spec = ModelSpec.load(version_dir)
        if spec.name != args["model_name"]:
            raise SpecError(
                f"model.json names the model {spec.name!r} but its folder is "
                f"{args['model_name']!r}; they must match"
            )
        placement = resolve_placement(
            args.get("model_instance_kind", "CPU"),
            int(args.get("model_instance_device_id", 0) or 0),
            instance_count(model_config),
            spec.deployment.threads_per_instance,
        )
        return cls(
            model_name=args["model_name"],
            instance_name=args.get("model_instance_name", args["model_name"]),
            model_config=model_config,
            version_dir=version_dir,
            spec=spec,
            placement=placement,
        )
