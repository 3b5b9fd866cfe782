"""The fit-to-device search pipeline: the config's data front, once per searched resolution,
then :func:`components.search.run` over the grid of the config's ``search:`` section, then
one MLflow parent run with a child run per candidate.

Only wiring: which pipeline's data front to call (the one ``run`` uses, cached the same way,
so a candidate trains on exactly the examples a pipeline run would, and a search after a
run reuses them) and where things are written: ``<work_dir>/search/`` holds the store of
every unit and the last search's table (``search.md``) and results (``candidates.json``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from components import search
from components.search import outcome, report
from components.tracking import search_runs, track
from pipelines import chain
from pipelines.config import PIPELINES, KwsConfig, VwwConfig
from pipelines.errors import PipelineError


@dataclass(frozen=True)
class SearchRun:
    outcome: outcome.SearchOutcome
    parent_run_id: str
    table: Path
    results: Path

    @property
    def all_fit(self) -> bool:
        """Every device got a candidate passing its gate."""
        return all(c.best is not None for c in self.outcome.choices)


def run(
    config: KwsConfig | VwwConfig,
    *,
    tracking_uri: str | None = None,
    pipeline_args: Sequence[str] = (),
    progress: bool = True,
    force: bool = False,
) -> SearchRun:
    """Search ``config``'s grid against ``config.devices``; ``force`` rebuilds every
    candidate (the data stages stay cached: ``run --force data`` redoes those)."""
    spec = config.search
    if spec.resolutions and config.pipeline != "vww":
        raise PipelineError(
            f"search.resolutions {list(spec.resolutions)}: only an image pipeline (vww) has "
            f"an input resolution to search; the {config.pipeline} pipeline's input is set by "
            "its front end"
        )
    root = config.work_dir / "search"
    module, section = PIPELINES[config.pipeline]
    front = importlib.import_module(module)
    default_resolution = _own_resolution(config)
    examples, data_keys = {}, {}
    for resolution in spec.resolutions or (default_resolution,):
        at = _at_resolution(config, resolution)
        cached = chain.Stages.open(at, front.STAGES, None)
        examples[resolution] = front.data_front(
            at, pipeline_args=pipeline_args, progress=progress, stages=cached
        )
        data_keys[resolution] = cached.keys[section]  # the examples' cache key
    stages = search.ModelStages(
        config.train, config.prune, config.quantize, config.patch, config.evaluate, config.gate
    )
    found = search.run(
        spec, stages, examples, data_keys, config.devices, root / "store",
        default_resolution=default_resolution, pipeline_args=pipeline_args, progress=progress,
        force=force,
    )  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    table, results = root / "search.md", root / "candidates.json"
    table.write_text(report.table(found))
    results.write_text(json.dumps(search_runs.records(found), indent=2))
    uri = tracking_uri or track.default_tracking_uri(config.work_dir)
    parent = search_runs.log_search(
        uri, config.track.experiment, f"search-{config.pipeline}",
        config.model_dump(mode="json"), found, config.devices,
    )  # fmt: skip
    return SearchRun(found, parent, table, results)


def _own_resolution(config: KwsConfig | VwwConfig) -> int | None:
    if config.pipeline != "vww":
        return None
    height, width = config.images.image_size
    return height if height == width else None


def _at_resolution(config, resolution: int | None):
    if resolution is None or config.pipeline != "vww":
        return config
    images = dataclasses.replace(config.images, image_size=(resolution, resolution))
    return config.model_copy(update={"images": images})
