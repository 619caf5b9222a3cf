"""Render (or check) the environment tables of README.md and docs/*.md from the settings declared
in supervisor_app/config/*.py, so the docs cannot drift from the code. A table goes wherever its
`<!-- env:KEY -->` ... `<!-- /env:KEY -->` markers are.

    python build/envdoc.py          # rewrite the files in place
    python build/envdoc.py --check  # exit 1 when one is stale
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import supervisor_app.config as config_pkg  # noqa: E402
from supervisor_app.config.settings import render_markdown  # noqa: E402


def setting_tables() -> dict[str, str]:
    """{'core': table, 'train': table, ...} from every *_SETTINGS tuple in the config package."""
    tables: dict[str, str] = {}
    for info in pkgutil.iter_modules(config_pkg.__path__):
        module = importlib.import_module(f"supervisor_app.config.{info.name}")
        for name, value in vars(module).items():
            if name.endswith("_SETTINGS") and isinstance(value, tuple) and value:
                tables[name[: -len("_SETTINGS")].lower()] = render_markdown(value)
    return tables


def render(readme: str) -> str:
    for key, table in setting_tables().items():
        pattern = re.compile(rf"(<!-- env:{key} -->\n)(?:.*?\n)?(<!-- /env:{key} -->)", re.S)
        readme = pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), readme)
    return readme


def main() -> int:
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts = {path: path.read_text() for path in paths if path.is_file()}
    missing = [k for k in setting_tables() if not any(f"<!-- env:{k} -->" in text for text in texts.values())]
    stale = [path.name for path, text in texts.items() if render(text) != text]
    if "--check" in sys.argv:
        if stale or missing:
            print(f"environment tables are stale in {stale} (missing sections: {missing}); run python build/envdoc.py")
            return 1
        return 0
    for path, text in texts.items():
        if render(text) != text:
            path.write_text(render(text))
    if missing:
        print(f"add markers for: {missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
