"""Pure pieces of the admin side: metrics exposition, password hashing, money display."""

from __future__ import annotations

from decimal import Decimal

import pytest

from api.templating import Formatter
from ocs import admin_auth
from ocs.metrics import Registry
from ocs.settings_store import OperatorSettings


def test_metrics_text_format() -> None:
    reg = Registry()
    reg.observe_ccr(1, 2001, 0.0008)
    reg.observe_ccr(1, 2001, 0.003)
    reg.observe_ccr(3, 2001, 0.2)
    reg.observe_ccr(1, 4012, 10.0)
    reg.live_sessions = 7
    reg.peers = 2
    text = reg.render()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert 'ocs_ccr_total{type="INITIAL",result_code="2001"} 2' in lines
    assert 'ocs_ccr_total{type="INITIAL",result_code="4012"} 1' in lines
    assert 'ocs_ccr_total{type="TERMINATION",result_code="2001"} 1' in lines
    assert 'ocs_ccr_duration_seconds_bucket{type="INITIAL",le="0.001"} 1' in lines
    assert 'ocs_ccr_duration_seconds_bucket{type="INITIAL",le="0.005"} 2' in lines
    assert 'ocs_ccr_duration_seconds_bucket{type="INITIAL",le="5.0"} 2' in lines
    assert 'ocs_ccr_duration_seconds_bucket{type="INITIAL",le="+Inf"} 3' in lines
    assert 'ocs_ccr_duration_seconds_count{type="INITIAL"} 3' in lines
    assert "ocs_live_sessions 7" in lines and "ocs_diameter_peers 2" in lines
    assert "# TYPE ocs_ccr_duration_seconds histogram" in lines
    # every sample line is "name{labels} value" with a numeric value
    for line in lines:
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_metrics_unknown_request_type_is_kept() -> None:
    reg = Registry()
    reg.observe_ccr(9, 3001, 0.001)
    assert 'ocs_ccr_total{type="9",result_code="3001"} 1' in reg.render()


def test_password_hash_roundtrip() -> None:
    record = admin_auth.hash_password("correct horse")
    assert record["algorithm"] == "scrypt" and "correct horse" not in str(record)
    assert admin_auth.verify_hash(record, "correct horse")
    assert not admin_auth.verify_hash(record, "correct horsE")
    assert not admin_auth.verify_hash({"algorithm": "md5"}, "x")
    assert not admin_auth.verify_hash({"algorithm": "scrypt", "salt": "!!"}, "x")
    other = admin_auth.hash_password("correct horse")
    assert other["salt"] != record["salt"]
    assert admin_auth.password_tag(record) != admin_auth.password_tag(other)
    with pytest.raises(admin_auth.PasswordError):
        admin_auth.validate_password("short")


def test_formatter_shows_money_beside_units() -> None:
    fmt = Formatter(OperatorSettings())
    assert fmt.money(203800) == "20,38 Euros"
    assert fmt.amount(-600) == "-0,06"
    assert fmt.amount(-7020) == "-0,70"  # one display: the currency's minor unit (defect 6)
    assert fmt.amount(7) == "0,00"
    assert fmt.rate(200) == "1,2000 Euros/min"
    assert fmt.rate(0) == "0,0000 Euros/min"
    assert fmt.signed(250000) == "+250000"
    assert fmt.duration(3725) == "1:02:05"
    usd = Formatter(OperatorSettings(currency="USD", unit_price=Decimal("0.001")))
    assert usd.money(1500) == "1,50 USD"
