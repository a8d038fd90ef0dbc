"""Where the SQL models are: sql/<layer>/<table>.sql, found without parsing them (engine/transform/models.py does)."""

from __future__ import annotations

from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
LAYERS = ("bronze", "silver", "gold", "marts")


def model_files(root: Path = SQL_DIR) -> list[Path]:
    """Every model's file, layer by layer, by name within a layer."""
    return [path for layer in LAYERS for path in sorted((root / layer).glob("*.sql"))]
