"""Release commands of ``tflm-pipelines``: bundles, promotion, rollback and the device registry.

``pipelines.cli`` adds these commands with :func:`add_parsers` and dispatches to
:data:`COMMANDS`; ``python -m pipelines.release_cli`` runs them alone (:func:`main`). Every
handler takes ``(args, extra)`` and returns the exit status; a refusal or a failure raises
ComponentError or PipelineError, which the caller prints as one line (exit status 1).

The registry lives in ``--registry`` (default ``runs/registry``); MLflow is reached at
``--tracking-uri`` (default ``$MLFLOW_TRACKING_URI``), needed to build bundles and used to
keep the ``<device>-<stage>`` aliases in step.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_REGISTRY = "runs/registry"
DEVICE_DIR = Path("configs/devices")
PASSWORD_VARIABLE = "TFLM_PIPELINES_KEY_PASSWORD"  # for an encrypted --key
STAGES = ("staging", "production")  # components.release.backend.STAGES, without its import

log = logging.getLogger("tflm_pipelines")


def add_parsers(sub) -> None:
    """Add ``bundle``, ``promote``, ``rollback`` and ``registry`` to ``sub`` (the CLI's
    subparsers)."""
    _add_bundle_parser(sub)
    _add_promote_parser(sub)
    _add_rollback_parser(sub)
    _add_registry_parser(sub)


def _registry_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        default=DEFAULT_REGISTRY,
        metavar="DIR",
        help=f"device registry folder (default {DEFAULT_REGISTRY})",
    )
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI); keeps aliases in step",
    )
    parser.add_argument(
        "--public-key", metavar="PEM", help="trust only bundles signed by this key (or certificate)"
    )


def _add_bundle_parser(sub) -> None:
    bundle = sub.add_parser(
        "bundle",
        help="write the release bundle of a registered model version for a device",
        description="Write a release bundle (model, C array, op resolver, kernel sources when "
        "used, manifest.json with SHA-256 of every file) for MODEL VERSION from MLflow.",
    )
    bundle.add_argument("model", help="registered model name, e.g. kws-ds-cnn")
    bundle.add_argument("version", help="registered model version")
    bundle.add_argument("--device", required=True, help="device YAML, or a name in configs/devices")
    bundle.add_argument("--to", required=True, metavar="DIR", help="a new or empty folder")
    bundle.add_argument("--key", metavar="PEM", help="sign manifest.json with this private key")
    bundle.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI)")
    bundle.add_argument(
        "--created-by", help="who built it (default: the user from the environment)"
    )


def _add_promote_parser(sub) -> None:
    promote = sub.add_parser(
        "promote",
        help="put a model version at a stage on a device target",
        description="Bundle MODEL VERSION for the device (or reuse its stored bundle), check "
        "it (file hashes, signature, the device's gate, the firmware's operators, no accuracy "
        "regression against production unless --force) and record the promotion.",
    )
    promote.add_argument("model", help="registered model name")
    promote.add_argument("version", help="registered model version")
    promote.add_argument(
        "--device", required=True, help="device YAML, or a name in configs/devices"
    )
    promote.add_argument("--stage", choices=STAGES, default="production")
    promote.add_argument("--force", action="store_true", help="override an accuracy regression")
    promote.add_argument("--reason", default="", help="why (required with --force)")
    promote.add_argument("--key", metavar="PEM", help="sign a newly built bundle with this key")
    promote.add_argument("--bundle", metavar="DIR", help="promote this bundle folder instead")
    promote.add_argument(
        "--max-regression",
        type=float,
        default=0.01,
        metavar="FRACTION",
        help="accuracy drop against production tolerated without --force (default 0.01)",
    )
    promote.add_argument("--actor", help="who promotes (default: the user from the environment)")
    _registry_args(promote)


def _add_rollback_parser(sub) -> None:
    rollback = sub.add_parser(
        "rollback",
        help="restore the previous version at a stage on a device target",
        description="Restore the version that was at the stage before the current one.",
    )
    rollback.add_argument("model", help="registered model name")
    rollback.add_argument("--device", required=True, help="device name or YAML")
    rollback.add_argument("--stage", choices=STAGES, default="production")
    rollback.add_argument("--reason", default="", help="why, recorded in the history")
    rollback.add_argument("--actor", help="who rolls back (default: the user from the environment)")
    _registry_args(rollback)


def _add_registry_parser(sub) -> None:
    registry = sub.add_parser(
        "registry",
        help="what runs where: list, show, history, pull, sync",
        description="Read the device registry, fetch a device's bundle, or re-sync MLflow.",
    )
    actions = registry.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    _registry_args(actions.add_parser("list", help="the current version of every slot"))
    show = actions.add_parser("show", help="the current bundle of a device target")
    history = actions.add_parser("history", help="every promotion and rollback")
    pull = actions.add_parser("pull", help="fetch and verify a device's current bundle")
    sync = actions.add_parser("sync", help="re-apply every slot to MLflow's aliases")
    for parser in (show, pull):
        parser.add_argument("device", help="device name or YAML")
    pull.add_argument("--to", required=True, metavar="DIR", help="a new or empty folder")
    history.add_argument("--device", help="only this device (name or YAML)")
    for parser in (show, pull, history):
        parser.add_argument("--model", help="only this registered model")
        parser.add_argument(
            "--stage", choices=STAGES, default=None if parser is history else "production"
        )
    for parser in (show, history, pull, sync):
        _registry_args(parser)


# -- handlers ------------------------------------------------------------------------------


def bundle(args: argparse.Namespace, extra: list[str]) -> int:
    from components.release.bundle import BundleSpec
    from components.release.from_mlflow import build_from_mlflow

    spec = BundleSpec(created_by=args.created_by)
    built = build_from_mlflow(
        _tracking_uri(args, required=True),
        args.model,
        args.version,
        _device(args.device),
        Path(args.to),
        spec,
    )
    if args.key:
        _sign(built.folder, args.key)
    signed = " (signed)" if args.key else ""
    print(f"wrote {built.folder}: bundle {built.bundle_id}{signed}")
    return 0


def promote(args: argparse.Namespace, extra: list[str]) -> int:
    import tempfile

    from components.release.promotion_rules import RegistrySpec

    device = _device(args.device)
    registry = _registry(args, RegistrySpec(max_regression=args.max_regression))
    if args.bundle:
        stored = registry.add(Path(args.bundle))
        _check_bundle_is(stored, args.model, args.version)
    else:
        # promoting a version again (e.g. after a rollback) reuses the bundle checked before
        stored = registry.latest_bundle(args.model, args.version, device.name)
        if stored is None:
            with tempfile.TemporaryDirectory(prefix="release-") as scratch:
                stored = registry.add(_new_bundle(args, device, Path(scratch) / "bundle"))
    action = registry.promote(
        stored.bundle_id,
        args.stage,
        device=device,
        actor=args.actor,
        reason=args.reason,
        force=args.force,
    )
    forced = " (forced)" if action.forced else ""
    print(
        f"#{action.id}: {action.model} {action.version} is now {action.stage} on "
        f"{action.device}{forced}, bundle {action.bundle_id}"
    )
    return 0


def rollback(args: argparse.Namespace, extra: list[str]) -> int:
    registry = _registry(args)
    action = registry.rollback(
        args.model, _device_name(args.device), args.stage, actor=args.actor, reason=args.reason
    )
    print(
        f"#{action.id}: {action.model} {action.version} is {action.stage} on {action.device} "
        f"again (was {action.previous_version})"
    )
    return 0


def registry(args: argparse.Namespace, extra: list[str]) -> int:
    handler = {
        "list": _list,
        "show": _show,
        "history": _history,
        "pull": _pull,
        "sync": _sync,
    }[args.registry_command]
    return handler(_registry(args), args)


def _list(registry, args: argparse.Namespace) -> int:
    rows = [
        (h.model, h.device, h.stage, h.version, h.bundle_id[:12], h.at, h.actor)
        for h in registry.placements()
    ]
    print(_table(("model", "device", "stage", "version", "bundle", "since", "by"), rows))
    return 0


def _show(registry, args: argparse.Namespace) -> int:
    import tempfile

    head = registry.slot_for(_device_name(args.device), args.stage, args.model)
    with tempfile.TemporaryDirectory(prefix="registry-show-") as scratch:
        checked = registry.fetch(head.bundle_id, Path(scratch) / "bundle")
    m, f = checked.manifest, checked.manifest.figures
    ops = [*m.ops.builtin, *(f"{c.name} v{c.version}" for c in m.ops.custom)]
    gate = "none" if m.gate is None else ("passed" if m.gate.passed else "FAILED")
    rows = [
        ("model", f"{m.model.name} {m.model.version} (run {m.model.run_id})"),
        ("device / stage", f"{head.device} / {head.stage}"),
        ("bundle", f"{head.bundle_id}{' (signed)' if checked.signed else ''}"),
        ("since", f"{head.at} by {head.actor} ({head.kind})"),
        ("int8 accuracy", f"{f.int8_accuracy:.4f}"),
        ("arena min / head / tail", f"{f.arena_min:,} / {f.arena_head:,} / {f.arena_tail:,} B"),
        ("flash, MACs", f"{f.flash_bytes:,} B, {f.macs:,}"),
        ("operators", ", ".join(ops)),
        (
            "preprocessing",
            ", ".join(f"{k}={v}" for k, v in m.preprocessing.preprocessing.describe().items()),
        ),
        ("gate", gate),
        ("verified with", f"tflite-micro {m.tflite_micro_version}"),
    ]
    print(_table(("field", "value"), rows))
    return 0


def _history(registry, args: argparse.Namespace) -> int:
    device = _device_name(args.device) if args.device else None
    actions = registry.history(args.model, device, args.stage)
    rows = [
        (
            a.id,
            a.at,
            a.kind,
            a.model,
            a.version,
            a.previous_version or "-",
            a.device,
            a.stage,
            a.actor,
            "yes" if a.forced else "",
            a.reason,
        )
        for a in actions
    ]
    header = (
        "#",
        "when",
        "action",
        "model",
        "version",
        "was",
        "device",
        "stage",
        "by",
        "forced",
        "reason",
    )
    print(_table(header, rows))
    return 0


def _pull(registry, args: argparse.Namespace) -> int:
    pulled = registry.pull(
        _device_name(args.device), Path(args.to), stage=args.stage, model=args.model
    )
    m = pulled.manifest
    signed = "signature and " if pulled.signed else ""
    print(
        f"pulled {m.model.name} {m.model.version} for {m.device.name} to {pulled.folder}: "
        f"{signed}{len(m.files)} file hashes verified"
    )
    return 0


def _sync(registry, args: argparse.Namespace) -> int:
    print(f"MLflow in step for {registry.sync_mlflow()} slots")
    return 0


COMMANDS = {"bundle": bundle, "promote": promote, "rollback": rollback, "registry": registry}


# -- helpers -------------------------------------------------------------------------------


def _registry(args: argparse.Namespace, spec=None):
    from components.release.registry import DeviceRegistry

    key = Path(args.public_key) if args.public_key else None
    return DeviceRegistry.local(
        Path(args.registry), tracking_uri=_tracking_uri(args), spec=spec, public_key=key
    )


def _tracking_uri(args: argparse.Namespace, required: bool = False) -> str | None:
    from pipelines.errors import PipelineError

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if required and not uri:
        raise PipelineError(
            "an MLflow tracking URI is needed: --tracking-uri or MLFLOW_TRACKING_URI"
        )
    return uri


def _device(text: str):
    """A device YAML path, or a name looked up as configs/devices/<name>.yaml."""
    from pipelines.config import load_device
    from pipelines.errors import PipelineError

    path = Path(text)
    if not path.is_file():
        path = DEVICE_DIR / f"{text}.yaml"
    if not path.is_file():
        raise PipelineError(f"device {text!r}: no such file, nor {DEVICE_DIR / (text + '.yaml')}")
    return load_device(path)


def _device_name(text: str) -> str:
    """A device's name: given as such, or read from its YAML."""
    return _device(text).name if text.endswith((".yaml", ".yml")) else text


def _new_bundle(args: argparse.Namespace, device, folder: Path) -> Path:
    from components.release.bundle import BundleSpec
    from components.release.from_mlflow import build_from_mlflow

    uri = _tracking_uri(args, required=True)
    built = build_from_mlflow(
        uri, args.model, args.version, device, folder, BundleSpec(created_by=args.actor)
    )
    if args.key:
        _sign(built.folder, args.key)
    return built.folder


def _check_bundle_is(stored, model: str, version: str) -> None:
    from pipelines.errors import PipelineError

    if (stored.model, stored.version) != (model, version):
        raise PipelineError(
            f"--bundle holds {stored.model} {stored.version}, not {model} {version}"
        )


def _sign(folder: Path, key: str) -> None:
    from components.release.signing import sign

    password = os.environ.get(PASSWORD_VARIABLE)
    sign(folder, Path(key), password.encode() if password else None)


def _table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """These commands alone, with the exit statuses and one-line errors of the main CLI."""
    parser = argparse.ArgumentParser(prog="tflm-pipelines", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_parsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    logging.getLogger("components").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return COMMANDS[args.command](args, [])
    except Exception as e:
        from components.errors import ComponentError
        from pipelines.errors import PipelineError
        from tflm_ext.errors import TflmExtError

        if not isinstance(e, PipelineError | ComponentError | TflmExtError):
            raise
        log.debug("failed", exc_info=True)
        print(f"tflm-pipelines: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
