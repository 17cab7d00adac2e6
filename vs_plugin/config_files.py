"""Reading a YAML (or JSON) config file with one clear error for each way it can fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import yaml

from .errors import ConfigError


def read_yaml(path: Union[str, Path], what: str) -> Any:
    """The parsed content of ``path``; ``what`` names the file in errors (e.g. "compare config")."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(error).splitlines()[0]}") from None
