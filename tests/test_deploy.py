"""What schedules the pipelines stays runnable: the Dockerfile, the pinned dependencies, the
cron line, the Kubernetes CronJob and the distributed-runner guide.

No Docker needed: the files are parsed and every config and command they name is checked
against the repo and the real CLI (``validate``, ``COMMAND --help``). The image itself is
built and run by ``deploy/build_image.sh``; ``TFLM_PIPELINES_DOCKER=1`` (as root) runs it
here too.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shlex
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from pipelines import cli

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
IMAGE_WORKDIR = "/app"  # the Dockerfile's WORKDIR: configs/ and runs/ live under it


def _load_freeze():
    spec = importlib.util.spec_from_file_location("freeze", DEPLOY / "freeze_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


freeze = _load_freeze()


# ---- Dockerfile ----


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (words[0].upper(), words[1].strip() if len(words) > 1 else "")
        for line in joined.splitlines()
        if (words := line.strip().split(None, 1))
    ]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for op, args in stage:
        if op == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    return env


def test_base_image_defaults_to_python_slim_and_can_be_swapped():
    args = [a for op, a in dockerfile_instructions() if op == "ARG"]
    assert "BASE=python:3.11-slim-bookworm" in args
    froms = [a.split()[0] for op, a in dockerfile_instructions() if op == "FROM"]
    assert froms and all(f == "${BASE}" for f in froms)


def test_image_runs_as_a_non_root_user():
    users = [a for op, a in final_stage() if op == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_entry_point_is_the_cli_console_script():
    (entrypoint,) = [json.loads(a) for op, a in final_stage() if op == "ENTRYPOINT"]
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    scripts = parser["options.entry_points"]["console_scripts"]
    assert entrypoint == ["tflm-pipelines"]
    assert re.search(r"^tflm-pipelines\s*=\s*pipelines\.cli:main$", scripts, flags=re.M)


def test_default_command_runs_an_existing_config():
    (command,) = [json.loads(a) for op, a in final_stage() if op == "CMD"]
    assert command[0] == "run"
    assert cli.main(["validate", _repo_config(command[1])]) == 0


def test_every_pip_install_uses_the_constraints_file():
    copies = [a.split() for op, a in dockerfile_instructions() if op == "COPY"]
    (target,) = [words[-1] for words in copies if "deploy/constraints.txt" in words]
    installs = [
        command
        for op, args in dockerfile_instructions()
        if op == "RUN"
        for command in re.split(r";|&&", args)
        if re.search(r"\bpip install\b", command)
    ]
    assert len(installs) >= 2  # the dependencies, then the project
    for command in installs:
        assert f"-c {target}" in command, command


def test_kernels_host_build_is_compiled_into_the_cache_the_image_uses():
    runs = " ".join(a for op, a in dockerfile_instructions() if op == "RUN")
    built = re.search(r"TFLM_EXT_CACHE_DIR=(\S+) python -m tflm_ext\.host_build", runs)
    assert built, "no RUN builds the host library ahead of time"
    assert env_of(final_stage())["TFLM_EXT_CACHE_DIR"] == built.group(1)
    copied = [a for op, a in final_stage() if op == "COPY" and a.startswith("--from=")]
    assert any(a.split()[-1] == built.group(1) for a in copied)


def test_dockerignore_lets_in_everything_the_build_copies():
    allowed = {ln[1:] for ln in (REPO / ".dockerignore").read_text().splitlines() if ln[:1] == "!"}
    sources = [
        word.rstrip("/")
        for op, args in dockerfile_instructions()
        if op == "COPY" and not args.startswith("--from=")
        for word in args.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert source in allowed, f"{source} is copied but .dockerignore keeps it out"
        assert (REPO / source).exists()


# ---- pinned dependencies ----


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_direct_dependency_at_the_installed_version():
    pins = constraint_pins()
    direct = freeze.direct_requirements()
    assert len(direct) >= 10
    for requirement in direct:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} from setup.cfg is not pinned"
        assert pins[name] == metadata.version(name), f"{name}: pin differs from the venv"
        assert requirement.specifier.contains(pins[name], prereleases=True), requirement


def test_constraints_file_is_what_the_venv_freezes_to():
    assert freeze.main(["--check"]) == 0, "deploy/constraints.txt drifted from the venv"


def test_constraints_leave_out_the_test_tools():
    assert not {"pytest", "ruff", "ipykernel"} & constraint_pins().keys()


def test_pinned_build_backend_satisfies_pyproject():
    pins = constraint_pins()
    for requirement in freeze.build_requirements():
        assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)])


# ---- schedules ----

CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def valid_cron_field(field: str, low: int, high: int) -> bool:
    for part in field.split(","):
        match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
        if not match:
            return False
        numbers = [int(g) for g in match.groups()[1:3] if g is not None]
        if any(not low <= n <= high for n in numbers) or match.group(4) == "0":
            return False
    return True


def valid_schedule(schedule: str) -> bool:
    fields = schedule.split()
    return len(fields) == 5 and all(
        valid_cron_field(f, lo, hi) for f, (lo, hi) in zip(fields, CRON_RANGES, strict=True)
    )


@pytest.mark.parametrize(
    ("schedule", "valid"),
    [("30 2 * * *", True), ("*/15 0-6 1,15 * 1-5", True), ("60 2 * * *", False),
     ("30 2 * *", False), ("30 2 * * * *", False), ("*/0 * * * *", False)],
)  # fmt: skip
def test_schedule_check_tells_valid_from_invalid(schedule, valid):
    assert valid_schedule(schedule) is valid


def cli_args_after_image(words: list[str]) -> list[str]:
    """The words after the tflm-pipelines image in a ``docker run`` command."""
    (at,) = [i for i, w in enumerate(words) if re.fullmatch(r"(.+/)?tflm-pipelines(:\S+)?", w)]
    return words[at + 1 :]


def _repo_config(path: str) -> str:
    """A config path as the image sees it (absolute under /app, or relative) -> the repo's."""
    relative = Path(path).relative_to(IMAGE_WORKDIR) if path.startswith("/") else Path(path)
    assert (REPO / relative).is_file(), f"{path} is not a config in the repo"
    return str(REPO / relative)


def check_run_command(args: list[str], tracking_uri: str) -> None:
    """``run CONFIG ... --tracking-uri URI`` on a config in the repo that validates."""
    assert args[0] == "run", args
    assert args[args.index("--tracking-uri") + 1] == tracking_uri
    assert cli.main(["validate", _repo_config(args[1])]) == 0


def test_crontab_runs_an_existing_config_nightly_against_a_tracking_server():
    lines = [ln for ln in (DEPLOY / "crontab").read_text().splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.lstrip().startswith("#")]
    env = dict(ln.split("=", 1) for ln in lines if re.match(r"^[A-Z_]+=", ln))
    (job,) = [ln for ln in lines if not re.match(r"^[A-Z_]+=", ln)]
    fields = job.split(None, 5)
    assert valid_schedule(" ".join(fields[:5])), job
    assert "%" not in fields[5]  # cron turns % into a newline
    assert env["MLFLOW_TRACKING_URI"].startswith("http")
    words = shlex.split(fields[5])
    assert words[words.index("docker") + 1] == "run"
    check_run_command(cli_args_after_image(words), "$MLFLOW_TRACKING_URI")


@pytest.fixture(scope="module")
def manifests():
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "cronjob.yaml").read_text()))
    return {doc["kind"]: doc for doc in documents}


def test_cronjob_is_a_valid_nightly_batch_v1_cronjob(manifests):
    cronjob = manifests["CronJob"]
    assert cronjob["apiVersion"] == "batch/v1"
    assert valid_schedule(cronjob["spec"]["schedule"])
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"


def _pod(manifests):
    return manifests["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _container_env(manifests) -> dict[str, str]:
    (container,) = _pod(manifests)["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
        env.update(manifests["ConfigMap"]["data"])
    return env


def test_cronjob_runs_the_cli_on_a_repo_config_against_the_tracking_service(manifests):
    (container,) = _pod(manifests)["containers"]
    assert "command" not in container  # the image's entry point, the CLI, runs
    assert re.fullmatch(r"(.+/)?tflm-pipelines(:\S+)?", container["image"])
    env = _container_env(manifests)
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    uri = env["MLFLOW_TRACKING_URI"]
    assert re.fullmatch(r"http://[\w-]+\.[\w-]+\.svc(\.cluster\.local)?:\d+", uri), uri
    check_run_command(args, uri)


def test_cronjob_is_non_root_with_requests_and_the_runs_claim(manifests):
    pod = _pod(manifests)
    (container,) = pod["containers"]
    uid = [a for op, a in final_stage() if op == "USER"][-1].split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == uid
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    claim = manifests["PersistentVolumeClaim"]["metadata"]["name"]
    (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == claim
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    work_dir = yaml.safe_load((REPO / "configs/kws.yaml").read_text())["work_dir"]
    assert f"{IMAGE_WORKDIR}/{work_dir}".startswith(mounts[volume["name"]] + "/")


# ---- the guides' commands ----

GUIDES = (DEPLOY / "distributed-runners.md", REPO / "README.md")


def guide_commands() -> list[list[str]]:
    """Every ``tflm-pipelines ...`` command and every ``docker run`` of the image, from
    code spans and bash blocks, as the CLI's arguments."""
    commands = []
    for guide in GUIDES:
        text = guide.read_text()
        spans = re.findall(r"```bash\n(.*?)```", text, flags=re.S) + re.findall(
            r"`([^`\n]+)`", text
        )
        for line in (ln for span in spans for ln in span.splitlines()):
            for part in re.split(r"&&|\|", line):
                words = shlex.split(part, comments=True)
                if words[:1] == ["tflm-pipelines"] and len(words) > 1:
                    commands.append(words[1:])
                elif words[:2] == ["docker", "run"] and "--entrypoint" not in words:
                    args = cli_args_after_image(words)
                    commands.append(args or ["run", "configs/kws.yaml"])  # the image's CMD
    return commands


def test_guides_show_commands():
    assert sum(c[0] == "run" for c in guide_commands()) >= 3


@pytest.mark.parametrize("args", guide_commands(), ids=" ".join)
def test_guide_commands_exist_in_the_cli(args, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exited:
        cli.main([args[0], "--help"])
    assert exited.value.code == 0, f"tflm-pipelines has no {args[0]!r} command"
    if args[0] in {"run", "search"} and len(args) > 1:
        assert cli.main(["validate", _repo_config(args[1])]) == 0
        assert not unknown_beam_options(args), args


# The CLI's own options on run and search; anything else must be a Beam option.
CLI_OPTIONS = {"--tracking-uri", "--runner", "--no-progress", "--set", "--device", "--force"}


def unknown_beam_options(args: list[str]) -> list[str]:
    """The ``--options`` of a run/search command that neither the CLI nor Beam knows."""
    flags = [a.split("=")[0] for a in args[2:] if a.startswith("--")]
    return [f for f in flags if f not in CLI_OPTIONS | beam_options()]


class _OptionRecorder:
    """Stands in for the argparse parser Beam's option classes add their flags to."""

    def __init__(self):
        self.flags: set[str] = set()

    def add_argument(self, *names, **_):
        self.flags.update(names)

    def add_argument_group(self, *_, **__):
        return self

    add_mutually_exclusive_group = add_argument_group


def beam_options() -> set[str]:
    """Every flag of every Beam PipelineOptions class, DaskRunner's included."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask import dask_runner

    recorder = _OptionRecorder()
    for cls in {dask_runner.DaskOptions, *_subclasses(PipelineOptions)}:
        cls._add_argparse_args(recorder)
    return recorder.flags


def _subclasses(cls) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def test_beam_option_check_knows_runner_flags_and_refuses_made_up_ones():
    args = ["run", "configs/kws.yaml", "--dask_client_address=tcp://h:8786", "--flink_master=h"]
    assert unknown_beam_options(args) == []
    assert unknown_beam_options([*args, "--dask_adress=tcp://h:8786"]) == ["--dask_adress"]


# ---- the real image ----


@pytest.mark.skipif(
    os.environ.get("TFLM_PIPELINES_DOCKER") != "1" or os.geteuid() != 0,
    reason="builds and runs the image: opt in with TFLM_PIPELINES_DOCKER=1, as root",
)
def test_build_script_builds_and_runs_the_image():
    done = subprocess.run(
        ["bash", str(DEPLOY / "build_image.sh")], capture_output=True, text=True, timeout=3600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "image size:" in done.stdout
