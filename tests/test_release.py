"""The release a team pins: ``python -m build`` makes an sdist and, from it, a wheel that
installs into a fresh virtual environment and works there, away from this checkout."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from uv import find_uv_bin

from locust_perfx import __version__
from tests.fixtures.locust import EXAMPLES, ROOT
from tests.fixtures.platform import PlatformServer

PACKAGE = ROOT / "locust_perfx"
PACKAGE_DATA = (
    "locust_perfx/py.typed",
    "locust_perfx/reference/openapi.yaml",
    "locust_perfx/dashboards/locust-perfx-influxdb1-influxql.json",
    "locust_perfx/dashboards/locust-perfx-influxdb2-flux.json",
    *(
        path.relative_to(ROOT).as_posix()
        for path in sorted((PACKAGE / "reference" / "templates").glob("*.html"))
    ),
)
NOT_SOURCE = (
    *(".git", ".tox", ".venv*", "__pycache__", "*.py[cod]", "*.egg-info", "build", "dist"),
    *("_build", ".hypothesis", ".*_cache", "test-artifacts", "*.sqlite3"),
)
"""What tools and test runs leave in a checkout, which the sdist must not depend on."""
BUILD_TIMEOUT = 300.0
"""A build, then an install from PyPI (uv): seconds, a minute on a busy 2-core machine."""
COMMAND_TIMEOUT = 60.0
SETUP_CFG = (ROOT / "setup.cfg").read_text()
RUNNING = "{}.{}".format(*sys.version_info)
UV = find_uv_bin()


class Release(NamedTuple):
    sdist: Path
    wheel: Path
    log: str
    """What the build printed."""


class Installed(NamedTuple):
    bin: Path
    env: dict[str, str]

    def run(self, *command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / command[0]), *command[1:]],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            cwd=cwd,
            env=self.env,
        )


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    """``python -m build``: the sdist, then the wheel built from the unpacked sdist, so a file
    the sdist lacks is missing from the wheel too."""
    out = tmp_path_factory.mktemp("dist")
    # From a copy: the other pytest-xdist workers' tests write bytecode (and its temporary
    # files) into tests/ while the sdist lists and copies it, and the build writes egg-info.
    source = tmp_path_factory.mktemp("source") / "locust-perfx"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    build = subprocess.run(
        [sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Release(sdist, wheel, build.stdout + build.stderr)


def install(python: str, wheel: Path, venv: Path) -> Installed:
    """The wheel with the reference extra and their dependencies from PyPI in a fresh venv of
    ``python``. uv resolves from the same metadata as pip, in seconds where pip's venv and
    install took a minute on a busy machine (its cache keeps repeated installs quick)."""
    subprocess.run(
        [UV, "venv", "-q", "--python", python, str(venv)], check=True, timeout=COMMAND_TIMEOUT
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFX_", "LOCUST_"))}
    env.pop("PYTHONPATH", None)
    subprocess.run(
        # With the reference extra: perfx-platform's dependencies.
        [
            UV,
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            f"{wheel}[reference]",
        ],
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT,
        env=env,
    )
    return Installed(venv / "bin", env)


@pytest.fixture(scope="module")
def installed(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel installed with the Python running the tests."""
    return install(sys.executable, release.wheel, tmp_path_factory.mktemp("venv"))


def classified_pythons() -> list[str]:
    """The Python versions setup.cfg's classifiers name ("3.11", ...)."""
    return re.findall(r"Programming Language :: Python :: (3\.\d+)$", SETUP_CFG, re.MULTILINE)


def interpreter(version: str) -> str | None:
    """``pythonX.Y`` on PATH (.ci/run puts pyenv's there), or under pyenv's versions folder."""
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:
        return found  # a pyenv shim of a version that is not global fails
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(versions.glob(f"{version}.*/bin/python{version}"), key=str)
    return str(candidates[-1]) if candidates else None


def test_the_classifiers_readme_and_tox_name_the_pythons_tested() -> None:
    """Each classified Python has a tox environment, and the README names exactly those."""
    tox = (ROOT / "tox.ini").read_text()
    envlist = re.search(r"^envlist = (.*)$", tox, re.MULTILINE)
    assert envlist is not None
    tested = sorted({f"3.{m}" for m in re.findall(r"\bpy3(\d+)\b", envlist.group(1))})
    readme = (ROOT / "README.rst").read_text()

    assert classified_pythons() == tested == ["3.11", "3.12", "3.13"]
    assert "Python 3.11, 3.12 or 3.13 and Locust" in " ".join(readme.split())


@pytest.mark.slow
@pytest.mark.parametrize(
    "python",
    [v for v in classified_pythons() if v != f"{sys.version_info[0]}.{sys.version_info[1]}"],
)
def test_the_wheel_installs_and_checks_a_run_on_each_python_classified(
    python: str,
    release: Release,
    platform_server: PlatformServer,
    tmp_path: Path,
) -> None:
    """The wheel on the other Pythons the classifiers promise (the running one's test is
    below): installed, ``perfx --version`` names that Python, and a dry run checks a run."""
    executable = interpreter(python)
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail(f"python{python} is classified but not installed here")
        pytest.skip(f"python{python} is not installed")
    on = install(executable, release.wheel, tmp_path / "venv")
    run_id = platform_server.create_run()

    version = on.run("perfx", "--version", cwd=tmp_path)
    checked = on.run(*dry_run(run_id, platform_server), cwd=tmp_path)

    assert version.returncode == 0, version.stderr
    assert f", Python {python}." in version.stdout
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["run_id"] == run_id


def test_the_changelog_names_this_version_and_renders() -> None:
    import docutils.core

    changelog = (ROOT / "CHANGELOG.rst").read_text()
    docutils.core.publish_doctree(changelog, settings_overrides={"halt_level": 2})
    assert re.search(rf"^{re.escape(__version__)} \(", changelog, re.MULTILINE)


@pytest.mark.slow
def test_the_wheel_carries_every_module_and_the_package_data(release: Release) -> None:
    with zipfile.ZipFile(release.wheel) as wheel:
        names = set(wheel.namelist())
    modules = {path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*.py")}

    assert modules | set(PACKAGE_DATA) <= names
    assert any(re.fullmatch(r"locust_perfx-[^/]+\.dist-info/(licenses/)?LICENSE", n) for n in names)
    assert not {name for name in names if name.startswith(("tests/", "examples/", "bench/"))}


@pytest.mark.slow
def test_the_license_is_an_spdx_expression_and_the_build_warns_of_nothing(
    release: Release,
) -> None:
    with zipfile.ZipFile(release.wheel) as wheel:
        [metadata] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        fields = Parser().parsestr(wheel.read(metadata).decode())

    assert fields["License-Expression"] == "MIT"
    assert not [c for c in fields.get_all("Classifier", []) if c.startswith("License ::")]
    assert "License classifiers are deprecated" not in release.log
    assert "SetuptoolsDeprecationWarning" not in release.log


@pytest.mark.slow
def test_the_sdist_carries_the_changelog_and_what_the_tests_read(
    release: Release,
) -> None:
    with tarfile.open(release.sdist) as sdist:
        top, *names = sorted(sdist.getnames())
    files = {name.removeprefix(f"{top}/") for name in names}
    shipped = ["CHANGELOG.rst", "LICENSE", "README.rst", "tox.ini", ".ci/run", "perfx_plugin.py"]
    # The benchmark results the docs include, and Read the Docs' configuration.
    shipped += [f"bench/{path.name}" for path in (ROOT / "bench").glob("*results.txt")]
    shipped.append(".readthedocs.yaml")
    grafted = [
        path.relative_to(ROOT).as_posix()
        for folder in (
            "dashboards",
            "deploy",
            "docs",
            "examples",
            "tests",
            "locust_perfx/dashboards",
        )
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and not {"__pycache__", "_build"} & set(path.parts)
    ]

    assert set(shipped + grafted) <= files


@pytest.mark.slow
def test_the_oldest_locust_the_wheel_accepts_is_one_tox_tests(release: Release) -> None:
    """tox tests the Locust a ``locust==X.Y.*`` environment pins, and the newest (the one
    installed here, in the default environment): the oldest of them is the floor, so the
    wheel must accept its X.Y.0 and refuse the minor version before it."""
    pinned = re.findall(r"locust==(\d+\.\d+)\.\*", (ROOT / "tox.ini").read_text())
    newest = ".".join(version("locust").split(".")[:2])
    major, minor = min(Version(v) for v in [*pinned, newest]).release
    with zipfile.ZipFile(release.wheel) as wheel:
        metadata = Parser().parsestr(
            wheel.read(f"locust_perfx-{__version__}.dist-info/METADATA").decode()
        )
    requirements = [Requirement(line) for line in metadata.get_all("Requires-Dist", [])]
    (locust,) = [r for r in requirements if r.name == "locust"]  # not locust-plugins

    assert locust.specifier.contains(f"{major}.{minor}.0")
    assert not locust.specifier.contains(f"{major}.{minor - 1}.99")


@pytest.mark.slow
def test_the_installed_perfx_names_its_locust_and_python(
    installed: Installed, tmp_path: Path
) -> None:
    result = installed.run("perfx", "--version", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    version = rf"Locust \d+\.\d+\.\d+, Python {re.escape(platform.python_version())}"
    assert re.fullmatch(rf"locust-perfx {re.escape(__version__)} \({version}\)\n", result.stdout)


@pytest.mark.slow
def test_the_installed_reference_platform_answers_help(
    installed: Installed, tmp_path: Path
) -> None:
    result = installed.run("perfx-platform", "--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout


@pytest.mark.slow
def test_the_installed_perfx_writes_the_dashboards(installed: Installed, tmp_path: Path) -> None:
    result = installed.run("perfx", "dashboards", "grafana", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    for name in PACKAGE_DATA:
        if name.startswith("locust_perfx/dashboards/"):
            written = tmp_path / "grafana" / Path(name).name
            assert written.read_text() == (ROOT / name).read_text()


@pytest.mark.slow
def test_the_installed_package_is_the_wheel_with_its_data(
    installed: Installed, tmp_path: Path
) -> None:
    probe = (
        "import json, locust_perfx, locust_perfx.plugin\n"
        "from importlib.resources import files\n"
        "print(json.dumps({'file': locust_perfx.__file__, 'version': locust_perfx.__version__,\n"
        "  'openapi': files('locust_perfx.reference').joinpath('openapi.yaml').is_file()}))\n"
    )
    result = installed.run("python", "-c", probe, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert Path(found["file"]).is_relative_to(installed.bin.parent)
    assert (found["version"], found["openapi"]) == (__version__, True)


@pytest.mark.slow
def test_the_installed_plugin_checks_a_platform_run_without_load(
    installed: Installed, platform_server: PlatformServer, tmp_path: Path
) -> None:
    run_id = platform_server.create_run()
    result = installed.run(*dry_run(run_id, platform_server), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run_id"] == run_id
    assert platform_server.get_run(run_id)["status"] == "pending"


def dry_run(run_id: str, platform: PlatformServer) -> list[str]:
    """The ``perfx`` command that checks a run of ``platform`` against the example locustfile."""
    locustfile = str(EXAMPLES / "locustfile.py")
    return [
        "perfx",
        "-f",
        locustfile,
        "--run-id",
        run_id,
        "--platform-url",
        platform.url,
        "--dry-run",
    ]
