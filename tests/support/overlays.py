"""Reading an environment's overlay back, as the tests check what a bump or a rollback wrote."""

from __future__ import annotations

from pathlib import Path

from mlops_template.release.gitops import (
    KUSTOMIZATION,
    RELEASE,
    Release,
    overlay_dir,
    parse_overlay,
)


def read_overlay(overlays: Path, env: str) -> Release:
    """What `env`'s overlay holds in the working tree."""
    folder = overlay_dir(overlays, env)
    kustomization = (folder / KUSTOMIZATION).read_text(encoding="utf-8")
    return parse_overlay(kustomization, (folder / RELEASE).read_text(encoding="utf-8"), folder)
