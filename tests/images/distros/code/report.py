"""Training entry point of the distribution tests: reports which interpreter ran it and whether
the standard library's native modules load there (the bundled libraries, in smc's interpreter)."""

import importlib
import json
import os
import sys

NATIVE = (
    "ssl",
    "sqlite3",
    "ctypes",
    "lzma",
    "bz2",
    "zlib",
    "hashlib",
    "uuid",
    "decimal",
    "pyexpat",
)
loaded, failed = [], {}
for name in NATIVE:
    try:
        importlib.import_module(name)
        loaded.append(name)
    except ImportError as exc:
        failed[name] = str(exc)
report = {
    "executable": sys.executable,
    "version": "{}.{}".format(*sys.version_info[:2]),
    "frozen": bool(getattr(sys, "frozen", False)),
    "argv": sys.argv[1:],
    "loaded": loaded,
    "failed": failed,
}
with open(os.path.join(os.environ["SM_MODEL_DIR"], "report.json"), "w") as f:
    json.dump(report, f)
print("report:", json.dumps(report))
