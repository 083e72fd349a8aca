"""pyproject.toml, uv.lock and poetry.lock: declarations with their lines, locks beside."""

from __future__ import annotations

from pathlib import Path

from mlaudit.deps.manifests import read_dependencies
from mlaudit.deps.model import Kind

PYPROJECT = """\
[project]
name = "loan-service"
dependencies = [
    "fastapi>=0.110",
    "scikit-learn==1.4.2",
]

[project.optional-dependencies]
train = ["pandas>=2"]

[dependency-groups]
dev = ["pytest>=8", {include-group = "lint"}]
lint = ["ruff"]
"""

UV_LOCK = """\
version = 1

[[package]]
name = "loan-service"
version = "0.1.0"
source = { editable = "." }
dependencies = [
    { name = "scikit-learn" },
]

[[package]]
name = "scikit-learn"
version = "1.4.2"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files/scikit_learn-1.4.2.tar.gz", hash = "sha256:aa" }
wheels = [{ url = "https://files/scikit_learn-1.4.2.whl", hash = "sha256:bb" }]

[[package]]
name = "tool"
version = "0.3.0"
source = { git = "https://github.com/org/tool?rev=main#0123456789abcdef0123456789abcdef01234567" }
"""

POETRY_LOCK = """\
[[package]]
name = "torch"
version = "2.5.1"
description = "Tensors"
files = [
    {file = "torch-2.5.1-cp311-none-linux_x86_64.whl", hash = "sha256:cc"},
]

[[package]]
name = "mytool"
version = "1.0"
[package.source]
type = "git"
url = "https://github.com/org/mytool.git"
reference = "main"
resolved_reference = "89abcdef0123456789abcdef0123456789abcdef"
"""


def test_pyproject_with_a_uv_lock_beside_it(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "uv.lock").write_text(UV_LOCK)
    found = read_dependencies([tmp_path / "pyproject.toml"])
    assert found.files == (str(tmp_path / "pyproject.toml"), str(tmp_path / "uv.lock"))
    declared = [(r.name, r.kind, r.origin.line, r.version) for r in found.requirements]
    assert declared == [
        ("fastapi", Kind.PYPROJECT, 4, None),
        ("scikit-learn", Kind.PYPROJECT, 5, "1.4.2"),
        ("pandas", Kind.PYPROJECT, 9, None),
        ("pytest", Kind.PYPROJECT, 12, None),
        ("ruff", Kind.PYPROJECT, 13, None),
        ("scikit-learn", Kind.LOCK, 12, "1.4.2"),
        ("tool", Kind.LOCK, 19, "0.3.0"),
    ]
    locked = found.requirements[5]
    assert locked.hashes == ("sha256:aa", "sha256:bb")
    assert found.requirements[6].is_vcs
    assert found.requirements[6].vcs_commit_pinned


def test_poetry_lock(tmp_path: Path) -> None:
    lock = tmp_path / "poetry.lock"
    lock.write_text(POETRY_LOCK)
    torch, tool = read_dependencies([lock]).requirements
    assert (torch.name, torch.version, torch.origin.line, torch.hashes) == (
        "torch", "2.5.1", 2, ("sha256:cc",)
    )
    assert tool.url == "git+https://github.com/org/mytool.git@89abcdef0123456789abcdef0123456789abcdef"
    assert tool.vcs_commit_pinned


def test_invalid_toml_is_a_problem_at_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "pyproject.toml"
    broken.write_text('[project]\ndependencies = ["numpy"\nname = 3\n')
    [problem] = read_dependencies([broken]).problems
    assert problem.origin.line == 3
    assert "not valid TOML" in problem.message
