"""The Diameter resource bounds and TLS settings (`OCS_DIAMETER_*`) and their checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocs.config import ConfigError, load_settings


def test_defaults_bound_every_diameter_resource(tmp_path: Path) -> None:
    s = load_settings({"OCS_DATA_DIR": str(tmp_path)})
    assert s.diameter_max_message == 65536 and s.diameter_pre_cer_max == 8192
    assert s.diameter_max_connections == 512 and s.diameter_max_buffered == 16 << 20
    assert s.diameter_tls_port is None
    assert s.ivr_origin_host == "ivr.localdomain"

def test_bounds_and_tls_from_the_environment(tmp_path: Path) -> None:
    s = load_settings({
        "OCS_DATA_DIR": str(tmp_path), "OCS_DIAMETER_MAX_MESSAGE": "32768",
        "OCS_DIAMETER_PRE_CER_MAX": "4096", "OCS_DIAMETER_MAX_CONNECTIONS": "64",
        "OCS_DIAMETER_MAX_BUFFERED": "1000000", "OCS_DIAMETER_TLS_PORT": "5658",
        "OCS_DIAMETER_TLS_CERT": "/etc/ocs/ocs.pem", "OCS_DIAMETER_TLS_KEY": "/etc/ocs/ocs.key",
        "OCS_DIAMETER_TLS_CA": "/etc/ocs/ca.pem", "OCS_DIAMETER_REALM": "ims.test",
    })
    assert (s.diameter_max_message, s.diameter_pre_cer_max) == (32768, 4096)
    assert (s.diameter_max_connections, s.diameter_max_buffered) == (64, 1_000_000)
    assert s.diameter_tls_port == 5658 and s.diameter_tls_ca == Path("/etc/ocs/ca.pem")
    assert s.ivr_origin_host == "ivr.ims.test"

@pytest.mark.parametrize(("env", "message"), [
    ({"OCS_DIAMETER_MAX_CONNECTIONS": "0"}, "at least 1"),
    ({"OCS_DIAMETER_MAX_BUFFERED": "lots"}, "whole number"),
    ({"OCS_DIAMETER_MAX_MESSAGE": "100"}, "4096"),
    ({"OCS_DIAMETER_PRE_CER_MAX": "70000"}, "cannot be above"),
    ({"OCS_DIAMETER_TLS_PORT": "5658"}, "diameter_tls_cert"),
    ({"OCS_DIAMETER_TLS_PORT": "5658", "OCS_DIAMETER_TLS_CERT": "a",
      "OCS_DIAMETER_TLS_KEY": "b"}, "diameter_tls_ca"),
])
def test_bad_values_are_refused_with_the_setting_named(tmp_path: Path, env: dict[str, str],
                                                       message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"OCS_DATA_DIR": str(tmp_path), **env})
