"""The docs cannot go stale: generated pages match the code, every key and metric is documented, links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream.config.loader import _FEATURE_KEYS, _SIGNAL_KEYS, _WINDOW_KEYS
from stream.config.reference import ORDER, field_docs
from stream.config.sections import SECTIONS, DriftConfig
from stream.runtime.metrics import ServiceMetrics
from stream.tools.docs import GENERATED

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def all_docs() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_pages_match_the_code(name: str) -> None:
    assert (DOCS / name).read_text() == GENERATED[name](), f"docs/{name} is stale: run make docs"


def test_every_config_key_is_in_the_reference_with_a_meaning() -> None:
    reference = (DOCS / "configuration.md").read_text()
    assert set(ORDER) == set(SECTIONS) | {"drift"}
    for section in ORDER:
        for doc in field_docs(DriftConfig if section == "drift" else SECTIONS[section]):
            assert f"`{section}.{doc.key}`" in reference
            assert doc.doc, f"{section}.{doc.key} has no comment in stream/config/sections.py"


def test_feature_window_and_signal_keys_are_documented() -> None:
    features = (DOCS / "features.md").read_text()
    drift = (DOCS / "drift.md").read_text()
    for key in _FEATURE_KEYS | _WINDOW_KEYS:
        assert f"`{key}`" in features, f"[features] key {key} is missing from docs/features.md"
    for key in _SIGNAL_KEYS:
        assert f"`{key}`" in drift, f"[[drift.signals]] key {key} is missing from docs/drift.md"


def test_every_metric_is_documented() -> None:
    docs = all_docs()
    names = [family.name for family in ServiceMetrics().registry.collect()]
    assert len(names) >= 15
    for name in names:
        assert name in docs, f"metric {name} is missing from docs/"


def test_readme_is_a_front_door_whose_links_and_paths_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 15 * 1024
    assert readme.splitlines()[2:5] == ["```sh", readme.splitlines()[3], readme.splitlines()[4]]
    assert "make demo" in readme.splitlines()[3] and "make test" in readme.splitlines()[4]
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme + all_docs()):
        base = ROOT if (ROOT / target).exists() else DOCS
        assert (base / target).exists(), f"link to {target} leads nowhere"
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    for path in re.findall(r"^\| `([^`]+)` \|", layout, flags=re.M):
        assert (ROOT / path).exists(), f"the layout table names {path}, which is not in the tree"
