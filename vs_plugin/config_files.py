"""Reading a YAML (or JSON) config file with one clear error for each way it can fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

import yaml

from .errors import ConfigError


def read_yaml(path: Union[str, Path], what: str) -> Any:
    """The parsed content of ``path`` (a ``.json`` file read as JSON); ``what`` names the file in
    errors (e.g. "compare config")."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}") from None
    as_json = str(path).endswith(".json")
    try:
        return json.loads(text) if as_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{what} {path} is not valid {'JSON' if as_json else 'YAML'}: {str(error).splitlines()[0]}") from None
