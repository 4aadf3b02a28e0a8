"""Signatures on what moves money (services/kit/signing.py), the provisioner's fence rule
(services/kit/fencing.py) and the cost-guard's trust rules
(services/costguard/trust.py), with plain values: no bus, no clock."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from contracts.events import UnitEvent
from contracts.signatures import FENCE_HEADER, NO_FENCE, SIG_HEADER, SIGNER_HEADER
from services.costguard.trust import investigation_alert, should_investigate
from services.kit.config import SigningSettings
from services.kit.errors import ConfigError
from services.kit.fencing import Mark, Marks, admit
from services.kit.messages import Delivery
from services.kit.signing import (
    Authors,
    SignatureError,
    Signer,
    new_seed,
    own_signer,
    public_key_setting,
    read_seed,
    signing_settings,
    trusted_keys,
    verify,
    write_seed,
)
from tests.signing_helpers import COSTGUARD, INTRUDER, PROVISIONER, SEEDS, WATCHER
from tools.signingkeys import fleet_env

SUBJECT = "fleet.budget.approved"
BODY = b'{"id":"p-1","decision":"approved"}'
TRUSTED = {COSTGUARD.public_key: "costguard"}


# -- sign and verify -----------------------------------------------------------------
def test_a_signed_message_verifies_and_names_its_signer_and_fence() -> None:
    headers = COSTGUARD.sign(SUBJECT, BODY, 42)
    assert set(headers) == {SIG_HEADER, SIGNER_HEADER, FENCE_HEADER}
    signed = verify(SUBJECT, BODY, headers, TRUSTED)
    assert (signed.signer, signed.name, signed.fence) == (COSTGUARD.public_key, "costguard", 42)


def test_a_message_without_a_fence_verifies_with_none() -> None:
    headers = COSTGUARD.sign(SUBJECT, BODY)
    assert FENCE_HEADER not in headers
    assert verify(SUBJECT, BODY, headers, TRUSTED).fence == NO_FENCE


@pytest.mark.parametrize(
    ("subject", "body", "change", "why"),
    [
        (SUBJECT, BODY.replace(b"p-1", b"p-2"), {}, "does not match"),
        ("fleet.budget.denied", BODY, {}, "does not match"),  # moved to another subject
        (SUBJECT, BODY, {FENCE_HEADER: "43"}, "does not match"),  # a raised fence
        (SUBJECT, BODY, {FENCE_HEADER: "-"}, "not a fencing token"),
        (SUBJECT, BODY, {SIG_HEADER: "A" * 86}, "does not match"),
        (SUBJECT, BODY, {SIG_HEADER: "A" * 500}, "not an Ed25519 signature"),
        (SUBJECT, BODY, {SIGNER_HEADER: INTRUDER.public_key}, "not a trusted key"),
    ],
    ids=["payload", "subject", "fence", "bad-fence", "sig", "long-sig", "signer"],
)
def test_a_changed_message_does_not_verify(
    subject: str, body: bytes, change: dict[str, str], why: str
) -> None:
    headers = {**COSTGUARD.sign(SUBJECT, BODY, 42), **change}
    with pytest.raises(SignatureError, match=why):
        verify(subject, body, headers, TRUSTED)


def test_an_unsigned_message_and_an_untrusted_signer_are_refused() -> None:
    with pytest.raises(SignatureError, match="not signed"):
        verify(SUBJECT, BODY, {}, TRUSTED)
    forged = INTRUDER.sign(SUBJECT, BODY, 42)  # a valid signature, by a key nobody listed
    with pytest.raises(SignatureError, match="not a trusted key"):
        verify(SUBJECT, BODY, forged, TRUSTED)


def test_a_trusted_name_with_a_forged_key_string_is_refused() -> None:
    # the intruder claims the cost-guard's key but signs with its own
    forged = {**INTRUDER.sign(SUBJECT, BODY, 42), SIGNER_HEADER: COSTGUARD.public_key}
    with pytest.raises(SignatureError, match="does not match"):
        verify(SUBJECT, BODY, forged, TRUSTED)


# -- keys and settings ------------------------------------------------------------------
def test_a_seed_file_is_private_and_reads_back_to_the_same_key(tmp_path: Path) -> None:
    seed = new_seed()
    path = tmp_path / "keys" / "a.nk"
    write_seed(path, seed)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_seed(path) == seed
    signer = Signer(read_seed(path))
    assert signer.public_key == Signer(seed).public_key and signer.public_key.startswith("U")
    assert seed.decode() not in repr(signer)


def test_a_bad_seed_or_key_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an nkey seed"):
        Signer(b"SUNOTASEED")
    (tmp_path / "empty.nk").write_text("hello\n")
    with pytest.raises(ConfigError, match="holds no nkey seed"):
        read_seed(tmp_path / "empty.nk")
    with pytest.raises(ConfigError, match=r"\[signing\] costguard_key is not set"):
        public_key_setting(SigningSettings(), "costguard_key", "why")
    broken = COSTGUARD.public_key[:-1] + ("A" if COSTGUARD.public_key[-1] != "A" else "B")
    with pytest.raises(ConfigError, match="bad checksum"):
        public_key_setting(SigningSettings(costguard_key=broken), "costguard_key", "why")
    with pytest.raises(ConfigError, match="FLEET_SIGNING__SEED_FILE"):
        own_signer(SigningSettings(), "cost-guard")
    signer = own_signer(SigningSettings(seed=SEEDS["costguard"].decode()), "cost-guard")
    assert signer.public_key == COSTGUARD.public_key


def test_a_reader_believes_only_the_authors_it_was_given() -> None:
    subject, body = "fleet.unit.gpu.u1", b'{"state":"terminated"}'
    settings = SigningSettings(
        provisioner_key=PROVISIONER.public_key, watcher_key=WATCHER.public_key
    )
    reporters = Authors(trusted_keys(settings, "provisioner", "watcher"))
    for signer in (PROVISIONER, WATCHER):
        assert reporters.problem(Delivery(subject, signer.sign(subject, body), data=body)) is None
    forged = Delivery(subject, INTRUDER.sign(subject, body), data=body)
    assert "not a trusted key" in str(reporters.problem(forged))
    assert "not signed" in str(reporters.problem(Delivery(subject, {}, data=body)))
    only_provisioner = Authors(trusted_keys(settings, "provisioner"))
    watcher_signed = Delivery(subject, WATCHER.sign(subject, body), data=body)
    assert "not a trusted key" in str(only_provisioner.problem(watcher_signed))
    assert only_provisioner.unkeyed_warning("unit events", "provisioner_key") is None


def test_a_reader_without_keys_says_so_and_a_bad_key_names_its_setting() -> None:
    unkeyed = Authors(trusted_keys(SigningSettings(), "provisioner"))
    assert unkeyed.problem(Delivery("fleet.unit.p.u", {}, data=b"{}")) is None
    warning = unkeyed.unkeyed_warning("unit events", "provisioner_key")
    assert warning is not None and "FLEET_SIGNING__PROVISIONER_KEY" in warning
    with pytest.raises(ConfigError, match=r"\[signing\] watcher_key"):
        trusted_keys(SigningSettings(watcher_key="UNOTAKEY"), "watcher")
    env = {"FLEET_SIGNING__PROVISIONER_KEY": PROVISIONER.public_key}
    assert signing_settings(env).provisioner_key == PROVISIONER.public_key


def test_fleet_up_keeps_a_watcher_key_and_gives_its_public_key_to_everyone(
    tmp_path: Path,
) -> None:
    common, own = fleet_env(tmp_path)
    watcher = Signer(read_seed(Path(own["watcher"]["FLEET_SIGNING__SEED_FILE"])))
    assert common["FLEET_SIGNING__WATCHER_KEY"] == watcher.public_key
    assert stat.S_IMODE((tmp_path / "watcher.nk").stat().st_mode) == 0o600
    assert fleet_env(tmp_path)[0] == common  # made once, reused


# -- the provisioner's fence rule ---------------------------------------------------------
def test_a_higher_fence_is_taken_and_a_lower_one_after_it_is_refused() -> None:
    marks, why = admit(Marks(), 5, seq=10)
    assert why is None and marks.marks == (Mark(5, 10),)
    marks, why = admit(marks, 5, seq=11)  # the same holder again
    assert why is None
    marks, why = admit(marks, 9, seq=20)  # a new holder took over
    assert why is None and marks.marks == (Mark(5, 10), Mark(9, 20))
    same, why = admit(marks, 5, seq=21)  # the old holder speaks after the new one
    assert same == marks
    assert why is not None and "fencing token 5 is stale" in why and "fence 9" in why


def test_a_late_redelivery_from_before_the_takeover_is_still_carried_out() -> None:
    marks, _ = admit(Marks(), 5, seq=10)
    marks, _ = admit(marks, 9, seq=20)
    _, why = admit(marks, 5, seq=15)  # stored before fence 9 was first seen: current then
    assert why is None


def test_a_fence_is_current_at_its_earliest_position_seen() -> None:
    marks, _ = admit(Marks(), 9, seq=20)
    marks, why = admit(marks, 9, seq=12)  # a redelivery of an earlier one with the same fence
    assert why is None and marks.marks == (Mark(9, 12),)
    _, why = admit(marks, 5, seq=15)
    assert why is not None and "stale" in why


def test_a_verdict_without_a_fence_is_refused() -> None:
    marks = Marks()
    same, why = admit(marks, NO_FENCE, seq=1)
    assert same == marks and why is not None and "no fencing token" in why


# -- what the cost-guard believes ---------------------------------------------------------
def unit_event(state: str) -> UnitEvent:
    return UnitEvent(pool="h100", unit="u1", state=state, usd_per_hour=2.0)  # type: ignore[arg-type]


def test_only_an_unsigned_end_of_a_billed_unit_is_investigated() -> None:
    billed: dict[str, object] = {"h100/u1": object()}
    assert should_investigate(unit_event("terminated"), billed)
    assert should_investigate(unit_event("failed"), billed)
    assert not should_investigate(unit_event("ready"), billed)
    assert not should_investigate(unit_event("terminated"), {})


def test_an_end_the_provisioner_does_not_confirm_raises_a_critical_alert() -> None:
    ev = unit_event("terminated")
    alert = investigation_alert(ev, "not signed", True, {"state": "ready", "usd_per_hour": 2.49})
    assert alert is not None and alert.severity == "critical"
    assert "still bills it (ready, $2.49/h)" in alert.message and "keeps billing" in alert.message
    silent = investigation_alert(ev, "not signed", True, None)
    assert silent is not None and "did not answer" in silent.message
    unknown = investigation_alert(ev, "not signed", True, {})
    assert unknown is not None and "does not list it" in unknown.message


def test_an_end_the_provisioner_confirmed_raises_nothing() -> None:
    ev = unit_event("failed")
    assert investigation_alert(ev, "not signed", False, None) is None  # its signed end came
    assert investigation_alert(ev, "not signed", True, {"state": "failed"}) is None
