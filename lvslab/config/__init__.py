"""The stack config: its schema as data (schema.py), the typed model (model.py), reading values against the
schema (reader.py), the rules across keys (rules.py) and parse_config (parse.py). Standard library only."""

from lvslab.config.model import HEALTH_PAGE_SUFFIX, PROJECT, ConfigError, Director, LabConfig, RealServer
from lvslab.config.parse import parse_config

__all__ = ["HEALTH_PAGE_SUFFIX", "PROJECT", "ConfigError", "Director", "LabConfig", "RealServer", "parse_config"]
