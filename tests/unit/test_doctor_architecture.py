"""doctor --image: the image's architecture (Docker's names) against this smc's (uname -m)."""

from __future__ import annotations

from supervisor_app.doctor.image import check_architecture


def test_matching_architectures_are_ok():
    assert check_architecture("amd64", "x86_64").status == "ok"
    assert check_architecture("arm64", "aarch64").status == "ok"


def test_an_arm64_image_with_the_x86_64_smc_fails_and_names_the_arm64_binary():
    finding = check_architecture("arm64", "x86_64")
    assert finding.status == "fail" and "linux/arm64" in finding.message and "x86_64" in finding.message
    assert "dist/smc-aarch64" in finding.hint and "--platform linux/amd64" in finding.hint


def test_an_amd64_image_with_the_aarch64_smc_fails_and_names_the_x86_64_binary():
    finding = check_architecture("amd64", "aarch64")
    assert finding.status == "fail" and "dist/smc (make binary)" in finding.hint
    assert "--platform linux/arm64" in finding.hint


def test_an_architecture_smc_does_not_ship_for_says_which_it_does():
    finding = check_architecture("s390x", "x86_64")
    assert finding.status == "fail" and "linux/amd64 and linux/arm64" in finding.hint


def test_the_message_names_which_smc_was_compared():
    finding = check_architecture("arm64", "x86_64", "its smc")
    assert "but its smc is x86_64" in finding.message
    assert "its smc aarch64" in check_architecture("arm64", "aarch64", "its smc").message
