"""The isolation mode is a setting like the others: option > MLAUDIT_ISOLATION > file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlaudit.config import resolve
from mlaudit.core.errors import ConfigError


def test_the_mode_comes_from_option_environment_or_file(tmp_path: Path) -> None:
    (tmp_path / "mlaudit.toml").write_text('isolation = "none"\n')
    assert resolve({}, None, tmp_path, {}).isolation == "none"
    assert resolve({}, None, tmp_path, {"MLAUDIT_ISOLATION": "strict"}).isolation == "strict"
    given = {"isolation": "auto"}
    assert resolve(given, None, tmp_path, {"MLAUDIT_ISOLATION": "strict"}).isolation == "auto"
    assert resolve({}, None, tmp_path / "elsewhere", {}).isolation == "auto"


def test_an_unknown_mode_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="isolation must be one of auto, strict, none"):
        resolve({}, None, tmp_path, {"MLAUDIT_ISOLATION": "off"})
