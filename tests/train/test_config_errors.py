"""Bad /opt/ml input through the frozen binary: each fails with a message naming the file, the
key or place, and the fix, in the log and in output/failure."""

from __future__ import annotations

import json

from trainkit import failure, hyperparameters, log_events, make_job, script, train_env, write_json

OK_SCRIPT = "print('ran')\n"


def _run(smc, base, **extra):
    return smc("train", env=train_env(base, **extra))


def _error(done) -> dict:
    errors = [e for e in log_events(done.stdout, done.stderr) if e.get("level") == "error"]
    assert errors, done.stdout + done.stderr
    return errors[-1]


def test_missing_resourceconfig_names_the_file_and_fails(smc, tmp_path):
    base = make_job(tmp_path)
    (base / "input/config/resourceconfig.json").unlink()
    hyperparameters(base, sagemaker_program="train.py")
    script(base, "train.py", OK_SCRIPT)
    done = _run(smc, base)
    assert done.returncode == 5
    assert "resourceconfig.json is missing" in _error(done)["error"]
    assert failure(base).startswith(f"{base}/input/config/resourceconfig.json is missing")
    assert "ran" not in done.stdout


def test_unreadable_config_file_says_why(smc, tmp_path):
    base = make_job(tmp_path)
    (base / "input/config/hyperparameters.json").mkdir()  # a directory where a file should be
    done = _run(smc, base)
    assert done.returncode == 5
    assert "hyperparameters.json cannot be read: Is a directory" in failure(base)


def test_bad_json_reports_file_line_and_column(smc, tmp_path):
    base = make_job(tmp_path)
    (base / "input/config/hyperparameters.json").write_text('{\n  "epochs": "3",\n  "lr": 0.1,,\n}\n')
    done = _run(smc, base)
    assert done.returncode == 5
    message = _error(done)["error"]
    assert message.startswith(f"{base}/input/config/hyperparameters.json: invalid JSON at line 3 column 13")
    assert "Hint: fix the JSON in hyperparameters.json" in failure(base)


def test_json_that_is_not_an_object_is_refused(smc, tmp_path):
    base = make_job(tmp_path)
    write_json(base / "input/config/inputdataconfig.json", ["train"])
    done = _run(smc, base)
    assert done.returncode == 5
    assert "inputdataconfig.json: expected a JSON object at the top level, found a list" in failure(base)


def test_resourceconfig_key_of_wrong_type_names_key_and_type(smc, tmp_path):
    base = make_job(tmp_path)
    write_json(base / "input/config/resourceconfig.json", {"current_host": "algo-1", "hosts": "algo-1"})
    done = _run(smc, base)
    assert done.returncode == 5
    assert "key 'hosts' must be a non-empty list of strings, found a string" in _error(done)["error"]


def test_hyperparameters_that_are_not_strings_are_used_as_the_toolkit_does_with_a_warning(smc, tmp_path):
    base = make_job(tmp_path)
    write_json(
        base / "input/config/hyperparameters.json",
        {"epochs": 5, "flag": True, "sagemaker_program": "train.py"},
    )
    script(base, "train.py", "import sys; print('argv', sys.argv[1:])\n")
    done = _run(smc, base)
    assert done.returncode == 0, done.stderr
    assert "argv ['--epochs', '5', '--flag', 'True']" in done.stdout
    warnings = [e for e in log_events(done.stdout) if e["event"] == "hyperparameter_not_string"]
    assert sorted(w["key"] for w in warnings) == ["epochs", "flag"]
    assert "SageMaker passes every value as a string" in warnings[0]["hint"]


def test_channel_declared_but_absent_names_channel_and_directory(smc, tmp_path):
    base = make_job(tmp_path)
    write_json(
        base / "input/config/inputdataconfig.json",
        {"train": {"TrainingInputMode": "File"}, "stream": {"TrainingInputMode": "Pipe"}},
    )
    done = _run(smc, base)
    assert done.returncode == 5
    text = failure(base)
    assert f"channel 'train' is declared in {base}/input/config/inputdataconfig.json" in text
    assert f"its directory {base}/input/data/train does not exist" in text
    assert "stream" not in text  # Pipe channels are FIFOs, not directories


def test_no_entry_point_says_how_to_set_one(smc, tmp_path):
    base = make_job(tmp_path)
    hyperparameters(base, epochs=3)
    done = _run(smc, base)
    assert done.returncode == 5
    text = failure(base)
    assert text.startswith("no training entry point: neither SAGEMAKER_PROGRAM nor the sagemaker_program")
    assert "Hint: set SAGEMAKER_PROGRAM=train.py" in text


def test_entry_point_file_missing_is_named(smc, tmp_path):
    base = make_job(tmp_path)
    script(base, "other.py", OK_SCRIPT)
    done = _run(smc, base, SAGEMAKER_PROGRAM="train.py")
    assert done.returncode == 127
    assert failure(base).startswith(f"entry point 'train.py' not found in {base}/code")


def test_unsafe_entry_point_names_are_refused(smc, tmp_path):
    for name in ("-x.py", "../train.py", "/etc/passwd", "a;b.sh"):
        base = make_job(tmp_path, name=f"job{abs(hash(name))}")
        done = _run(smc, base, SAGEMAKER_PROGRAM=name)
        assert done.returncode == 5, name
        assert failure(base).startswith(f"entry point {name!r} is not a plain relative path"), name


def test_environment_program_beats_hyperparameter(smc, tmp_path):
    base = make_job(tmp_path)
    hyperparameters(base, sagemaker_program="hp.py")
    script(base, "hp.py", "print('from hp')\n")
    script(base, "env.py", "print('from env')\n")
    done = _run(smc, base, SAGEMAKER_PROGRAM="env.py")
    assert done.returncode == 0
    assert "from env" in done.stdout and "from hp" not in done.stdout


def test_stale_status_files_are_removed_before_the_job(smc, tmp_path):
    base = make_job(tmp_path)
    (base / "output/failure").write_text("old failure")
    script(base, "train.py", OK_SCRIPT)
    done = _run(smc, base, SAGEMAKER_PROGRAM="train.py")
    assert done.returncode == 0
    assert not (base / "output/failure").exists()
    assert (base / "output/success").read_text() == ""
    assert json.loads(done.stdout.splitlines()[0])["event"] == "stale_status_file_removed"
