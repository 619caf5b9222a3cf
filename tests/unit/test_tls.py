"""tls.py: which CA bundle the bundled OpenSSL is pointed at, and that programs other than smc
never see the SSL_CERT_FILE smc set (the Docker test is tests/images/test_ca_bundles.py)."""

from __future__ import annotations

from supervisor_app import process, tls


def _bundle(path, text="-----BEGIN CERTIFICATE-----\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_defaults_with_certificates_win(tmp_path):
    rhel = _bundle(tmp_path / "pki/ca-bundle.crt")
    default_file = _bundle(tmp_path / "ssl/cert.pem")
    assert tls.ca_bundle_to_use(default_file, None, [rhel]) is None
    hashed = tmp_path / "certs"
    _bundle(hashed / "5ad8a5d6.0")
    assert tls.ca_bundle_to_use(None, str(hashed), [rhel]) is None


def test_a_directory_without_hashed_names_holds_nothing(tmp_path):
    # RHEL's /etc/ssl/certs: a link to /etc/pki/tls/certs, which has bundle files, no hashed names.
    certs = tmp_path / "certs"
    _bundle(certs / "ca-bundle.crt")
    _bundle(certs / "ca-bundle.trust.crt")
    assert tls.ca_bundle_to_use(str(tmp_path / "missing.pem"), str(certs), [str(certs / "ca-bundle.crt")]) == str(
        certs / "ca-bundle.crt"
    )


def test_first_existing_non_empty_candidate(tmp_path):
    empty = _bundle(tmp_path / "a/empty.pem", text="")
    second = _bundle(tmp_path / "b/ca.pem")
    third = _bundle(tmp_path / "c/ca.pem")
    assert tls.ca_bundle_to_use(None, None, [str(tmp_path / "none.pem"), empty, second, third]) == second
    assert tls.ca_bundle_to_use(None, None, [str(tmp_path / "none.pem")]) is None


def test_the_known_paths_include_every_family():
    for path in ("/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/ca-bundle.pem",
                 "/etc/ssl/cert.pem"):
        assert path in tls.CA_BUNDLES


def test_a_users_choice_is_never_changed():
    for env in ({"SSL_CERT_FILE": "/mine.pem"}, {"SSL_CERT_DIR": "/my/certs"}):
        before = dict(env)
        assert tls.use_distribution_ca_bundle(env) is None
        assert env == before


def test_foreign_programs_lose_smcs_setting_but_keep_the_users():
    env = {"PATH": "/bin"}
    env[tls.FILE_VAR] = env[tls._MARK] = "/etc/pki/tls/certs/ca-bundle.crt"
    assert process.foreign_env(env) == {"PATH": "/bin"}
    assert process.self_env(env) == env  # a re-run of smc inherits it and does not look again
    users = {"PATH": "/bin", "SSL_CERT_FILE": "/mine.pem"}
    assert process.foreign_env(users) == users
    # A user who set SSL_CERT_FILE in a re-run of smc's environment keeps it.
    changed = {**env, "SSL_CERT_FILE": "/mine.pem"}
    assert process.foreign_env(changed) == {"PATH": "/bin", "SSL_CERT_FILE": "/mine.pem"}
