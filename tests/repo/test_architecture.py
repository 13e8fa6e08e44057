"""docs/architecture.md names every folder and every module of the package, so the page a
newcomer reads first cannot fall behind a move."""

from __future__ import annotations

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "src" / "mlops_template"
PAGE = REPO_ROOT / "docs" / "architecture.md"


def test_the_architecture_page_names_every_folder_and_module() -> None:
    text = PAGE.read_text(encoding="utf-8")
    missing = []
    for folder in sorted(path for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()):
        if f"`{folder.name}/`" not in text:
            missing.append(f"{folder.name}/")
        for module in sorted(folder.glob("*.py")):
            if module.name != "__init__.py" and f"`{module.name}`" not in text:
                missing.append(f"{folder.name}/{module.name}")
    assert missing == [], "docs/architecture.md does not name these"
