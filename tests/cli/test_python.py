"""`smc python` behaves as CPython's command line, inside the frozen binary."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

PRINT_STATE = "import sys, json; print(json.dumps({'argv': sys.argv, 'path0': sys.path[0], 'name': __name__}))"


def _state(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_dash_c_sets_argv_and_cwd_path(smc):
    state = _state(smc("python", "-c", PRINT_STATE, "a", "b"))
    assert state == {"argv": ["-c", "a", "b"], "path0": "", "name": "__main__"}


def test_script_gets_argv_its_dir_on_path_and_imports_a_sibling(smc, tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 42\n")
    script = tmp_path / "main.py"
    script.write_text("import helper\n" + PRINT_STATE + "\nprint(helper.VALUE)\n")
    result = smc("python", str(script), "--epochs", "3")
    lines = result.stdout.strip().splitlines()
    assert json.loads(lines[0]) == {"argv": [str(script), "--epochs", "3"], "path0": str(tmp_path), "name": "__main__"}
    assert lines[1] == "42"


def test_dash_m_runs_a_package_main_from_cwd(smc, tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(PRINT_STATE)
    state = _state(smc("python", "-m", "mypkg", "x", cwd=tmp_path))
    assert state["argv"] == [str(pkg / "__main__.py"), "x"]
    assert state["path0"] == str(tmp_path)
    assert state["name"] == "__main__"


def test_dash_m_stdlib_module(smc, tmp_path):
    data = tmp_path / "d.json"
    data.write_text('{"b": 1, "a": [1, 2]}')
    result = smc("python", "-m", "json.tool", "--sort-keys", str(data))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"a": [1, 2], "b": 1}


def test_leading_interpreter_flags_are_accepted(smc):
    for flags in (["-u"], ["-B"], ["-E"], ["-s"], ["-I"], ["-O"], ["-uB"], ["-u", "-B", "-s"]):
        result = smc("python", *flags, "-c", "print('ok')")
        assert (result.returncode, result.stdout) == (0, "ok\n"), (flags, result.stderr)


def test_unknown_flag_is_a_usage_error(smc):
    result = smc("python", "-Z", "-c", "pass")
    assert result.returncode == 2
    assert "unknown option -Z" in result.stderr


def test_stdin_program(smc):
    result = smc("python", "-", "arg", input="import sys\nprint(sys.argv)\n")
    assert result.stdout.strip() == "['-', 'arg']"


def test_exit_code_and_traceback_are_cpythons(smc, tmp_path):
    assert smc("python", "-c", "import sys; sys.exit(3)").returncode == 3
    script = tmp_path / "boom.py"
    script.write_text("def f():\n    raise ValueError('bad value')\nf()\n")
    result = smc("python", str(script))
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert f'File "{script}", line 3' in result.stderr
    assert "ValueError: bad value" in result.stderr
    assert "supervisor_app" not in result.stderr and "runpy" not in result.stderr


def test_missing_script_says_which_file(smc, tmp_path):
    result = smc("python", str(tmp_path / "nope.py"))
    assert result.returncode == 2
    assert "nope.py" in result.stderr and "No such file" in result.stderr


def test_pythonpath_is_honoured_and_dash_E_ignores_it(smc, tmp_path):
    (tmp_path / "usermod.py").write_text("WHO = 'user'\n")
    env = {"PYTHONPATH": str(tmp_path)}
    assert smc("python", "-c", "import usermod; print(usermod.WHO)", env=env).stdout == "user\n"
    result = smc("python", "-E", "-c", "import usermod", env=env)
    assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr


def test_user_packages_shadow_bundled_ones(smc, tmp_path):
    fake = tmp_path / "flask"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = 'users-own'\n")
    result = smc("python", "-c", "import flask; print(flask.__version__)", env={"PYTHONPATH": str(tmp_path)})
    assert result.stdout == "users-own\n", result.stderr


def test_bundled_packages_are_importable_without_user_copies(smc):
    result = smc("python", "-c", "import flask, gunicorn, structlog, werkzeug; print('ok')")
    assert result.stdout == "ok\n", result.stderr


def test_site_packages_pth_and_sitecustomize_under_smc_prefix(smc, tmp_path):
    site = tmp_path / "prefix" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    extra = tmp_path / "extra"
    site.mkdir(parents=True)
    extra.mkdir()
    (extra / "fromp.py").write_text("X = 'pth'\n")
    (site / "extra.pth").write_text(str(extra) + "\n")
    (site / "sitecustomize.py").write_text("import builtins\nbuiltins.SITE_CUSTOMIZED = True\n")
    result = smc(
        "python", "-c", "import fromp; print(fromp.X, SITE_CUSTOMIZED)", env={"SMC_PREFIX": str(tmp_path / "prefix")}
    )
    assert result.stdout == "pth True\n", result.stderr


def test_whole_stdlib_is_bundled(smc):
    mods = "cmath decimal sqlite3 ctypes csv xml.etree.ElementTree email.mime.text concurrent.futures lzma bz2 zoneinfo"
    result = smc("python", "-c", f"import {', '.join(mods.split())}; print('ok')")
    assert result.stdout == "ok\n", result.stderr


def test_multiprocessing_pool_works_in_every_start_method(smc, tmp_path):
    script = tmp_path / "mp.py"
    script.write_text(
        "import multiprocessing as mp\n"
        "def sq(x):\n    return x * x\n"
        "if __name__ == '__main__':\n"
        "    for method in ('spawn', 'forkserver', 'fork'):\n"
        "        with mp.get_context(method).Pool(2) as pool:\n"
        "            print(method, sum(pool.map(sq, range(10))))\n"
    )
    result = smc("python", str(script))
    assert result.stdout.split("\n")[:3] == ["spawn 285", "forkserver 285", "fork 285"], result.stderr


def _make_wheel(directory: Path) -> Path:
    wheel = directory / "tinypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("tinypkg/__init__.py", "def hello():\n    return 'hello from tinypkg'\n")
        zf.writestr("tinypkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n")
        zf.writestr(
            "tinypkg-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr("tinypkg-1.0.dist-info/RECORD", "")
    return wheel


def test_pip_install_target_then_import(smc, tmp_path):
    wheel = _make_wheel(tmp_path)
    target = tmp_path / "site"
    result = smc("python", "-m", "pip", "install", "--no-index", "--target", str(target), str(wheel), timeout=120)
    assert result.returncode == 0, result.stderr
    use = smc("python", "-c", "import tinypkg; print(tinypkg.hello())", env={"PYTHONPATH": str(target)})
    assert use.stdout == "hello from tinypkg\n", use.stderr


def test_pip_install_default_goes_to_smc_prefix(smc, tmp_path):
    wheel = _make_wheel(tmp_path)
    env = {"SMC_PREFIX": str(tmp_path / "prefix")}
    result = smc("python", "-m", "pip", "install", "--no-index", str(wheel), env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "prefix").rglob("tinypkg/__init__.py")), "pip did not install under SMC_PREFIX"
    use = smc("python", "-c", "import tinypkg; print(tinypkg.hello())", env=env)
    assert use.stdout == "hello from tinypkg\n", use.stderr


def test_sys_executable_reruns_as_python(smc, tmp_path):
    code = "import subprocess, sys; print(subprocess.run([sys.executable, '-c', 'print(6*7)'], capture_output=True, text=True).stdout.strip())"
    result = smc("python", "-c", code)
    assert result.stdout == "42\n", result.stderr
