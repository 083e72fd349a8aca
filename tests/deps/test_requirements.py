"""pip requirements files: every construct pip accepts, line numbers, and bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaudit.deps.manifests import read_dependencies
from mlaudit.deps.model import Declared, Kind

SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64


def _by_name(path: Path) -> dict[str, Declared]:
    return {r.name: r for r in read_dependencies([path]).requirements}


def test_a_realistic_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVATE_INDEX", "https://pypi.example.org/simple")
    (tmp_path / "base.txt").write_text("numpy==1.26.4\n")
    (tmp_path / "constraints.txt").write_text("scipy==1.13.0\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# serving stack\n"
        "-r base.txt\n"
        "-c constraints.txt\n"
        "--extra-index-url ${PRIVATE_INDEX}\n"
        "fastapi[standard]==0.111.0 ; python_version >= '3.9'  # web\n"
        f"scikit-learn==1.4.2 \\\n    --hash={SHA_A} \\\n    --hash={SHA_B}\n"
        "pandas>=2.0,<3\n"
        "requests\n"
        "torch===2.5.1\n"
        "mylib @ https://files.example.org/mylib-1.0-py3-none-any.whl#sha256=" + "c" * 64 + "\n"
        "git+https://github.com/org/tool@v1.2#egg=tool\n"
        "-e ./plugins/local_plugin\n"
        "pillow==10.*\n"
    )
    found = read_dependencies([requirements])
    names = {r.name: r for r in found.requirements}
    assert found.problems == ()
    assert found.files == (str(requirements), str(tmp_path / "base.txt"),
                           str(tmp_path / "constraints.txt"))
    assert names["numpy"].origin.path == str(tmp_path / "base.txt")
    assert names["scipy"].kind is Kind.CONSTRAINT
    assert (names["fastapi"].version, names["fastapi"].extras) == ("0.111.0", ("standard",))
    sklearn = names["scikit-learn"]
    assert (sklearn.origin.line, sklearn.version, sklearn.hashes) == (6, "1.4.2", (SHA_A, SHA_B))
    assert names["pandas"].version is None
    assert names["pandas"].specifier == "<3,>=2.0"
    assert names["requests"].specifier == ""
    assert names["torch"].version == "2.5.1"
    assert (names["mylib"].url or "").startswith("https://")
    assert names["tool"].is_vcs
    assert not names["tool"].vcs_commit_pinned
    assert names["tool"].origin.line == 13
    editable = next(r for r in found.requirements if r.editable)
    assert editable.is_local
    assert names["pillow"].version is None  # a wildcard is a range
    [index] = found.index_options
    assert (index.option, index.value, index.origin.line) == (
        "--extra-index-url", "https://pypi.example.org/simple", 4
    )


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_is_read(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "numpy==1.26.4\n"
        "this is not a requirement!!\n"
        "--frobnicate yes\n"
        "-r missing.txt\n"
        "-r https://example.org/remote.txt\n"
        "pandas==2.2.2 --index-url https://x\n"
        "joblib==1.4.2\n"
    )
    found = read_dependencies([requirements])
    assert {r.name for r in found.requirements} == {"numpy", "joblib"}
    assert [p.origin.line for p in found.problems] == [2, 3, 4, 5, 6]
    messages = [p.message for p in found.problems]
    assert "not a valid requirement" in messages[0]
    assert "unknown option --frobnicate" in messages[1]
    assert "included file missing.txt not found" in messages[2]
    assert "remote include" in messages[3]
    assert "cannot follow a requirement" in messages[4]


def test_include_cycles_are_read_once(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("-r b.txt\nnumpy==1.0\n")
    (tmp_path / "b.txt").write_text("-r a.txt\npandas==2.0\n")
    found = read_dependencies([tmp_path / "a.txt"])
    assert sorted(r.name for r in found.requirements) == ["numpy", "pandas"]
    assert found.problems == ()


def test_a_file_that_is_not_text_is_a_problem(tmp_path: Path) -> None:
    binary = tmp_path / "requirements.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    [problem] = read_dependencies([binary]).problems
    assert "not UTF-8" in problem.message


names = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,6}([-_.][A-Za-z0-9]{1,4})?", fullmatch=True)
version_text = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)).map(
    lambda t: ".".join(map(str, t))
)
operators = st.sampled_from(["==", ">=", "<=", "~=", "!=", ">", "<", ""])
markers = st.sampled_from(["", " ; python_version >= '3.9'", ' ; sys_platform == "linux"'])
extras = st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), max_size=2, unique=True)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names, extras, operators, version_text, markers, st.booleans(), st.booleans())
def test_rendered_requirements_parse_back(
    tmp_path: Path, name: str, extra: list[str], operator: str, version: str, marker: str,
    comment: bool, continued: bool,
) -> None:
    spec = f"{operator}{version}" if operator else ""
    text = name + (f"[{','.join(extra)}]" if extra else "") + spec + marker
    hashes = f" \\\n    --hash={SHA_A}" if continued else ""
    # As for pip, a comment ends the logical line: it goes after the last continuation.
    tail = "  # pinned by hand" if comment else ""
    path = tmp_path / "requirements.txt"
    path.write_text(f"# header\n\n{text}{hashes}{tail}\nlast==1.0\n")
    found = read_dependencies([path])
    assert found.problems == ()
    first = found.requirements[0]
    assert first.name == name.lower().replace("_", "-").replace(".", "-")
    assert first.origin.line == 3
    assert first.version == (version if operator == "==" else None)
    assert first.extras == tuple(sorted(extra))
    assert first.hashes == ((SHA_A,) if continued else ())
    assert found.requirements[1].origin.line == (5 if continued else 4)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40),
                max_size=8))
def test_arbitrary_text_never_raises(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    found = read_dependencies([path])
    for problem in found.problems:
        assert problem.origin.path == str(path)
