"""The installed package carries the recipes: `selfsup demo` and shipped recipes work from any directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.slow


def test_wheel_ships_every_recipe_and_the_installed_package_finds_them(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("selfsup-*.whl")
    shipped = {p.relative_to(ROOT / "recipes").as_posix() for p in (ROOT / "recipes").rglob("*.yaml")}
    with zipfile.ZipFile(wheel) as z:
        packed = {n[len("selfsup/recipes/") :] for n in z.namelist() if n.startswith("selfsup/recipes/")}
    assert shipped and shipped <= packed

    # Installed (not the checkout), run from an empty directory: the demo recipe and a shipped
    # recipe named as on the command line both resolve inside the installed package.
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = (
        "import selfsup, sys; from selfsup.commands.demo import demo_recipe_path; "
        "from selfsup.recipe import load_recipe; "
        "print(selfsup.__file__); print(demo_recipe_path()); "
        "print(load_recipe('recipes/cifar10/simclr.yaml', ['data.path=/d']).name)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=work, env={"PYTHONPATH": str(site)}, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr[-2000:]
    where, demo, name = p.stdout.split()
    assert where.startswith(str(site)) and demo.startswith(str(site)) and name == "cifar10_simclr"


def test_missing_recipe_path_still_names_itself(tmp_path, monkeypatch):
    from selfsup.errors import ConfigError
    from selfsup.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    assert load_recipe("recipes/demo.yaml").name == "demo"  # the shipped one, from another directory
    with pytest.raises(ConfigError, match="recipes/nope.yaml' not found"):
        load_recipe("recipes/nope.yaml")
