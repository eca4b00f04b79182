"""Configuration: URL parsing, layering (flags > env > file), and secrets never shown."""

from __future__ import annotations

import pytest

from migrate.config import ServerOptions, TlsOptions, common_config, parse_endpoint
from migrate.errors import ConfigError, ExitCode
from migrate.run.options import RunOptions
from migrate.settings import load_file, resolve, settings_of


def test_parse_full_url():
    ep = parse_endpoint("redis://alice:s3cret@db.example:6380/4")
    assert (ep.host, ep.port, ep.username, ep.password, ep.db) == ("db.example", 6380, "alice", "s3cret", 4)
    assert not ep.uses_tls


def test_parse_tls_and_unix_and_ipv6():
    tls = TlsOptions(ca_file="/x/ca.pem")
    ep = parse_endpoint("rediss://h:7000", tls)
    assert ep.uses_tls and ep.tls.ca_file == "/x/ca.pem" and ep.tls.verify
    assert parse_endpoint("redis://h", tls).tls == TlsOptions()  # TLS options only apply to rediss://
    unix = parse_endpoint("unix:///run/redis.sock?db=2&password=pw")
    assert (unix.path, unix.db, unix.password) == ("/run/redis.sock", 2, "pw")
    assert parse_endpoint("redis://[::1]:6379/0").host == "::1"


def test_password_never_printed():
    ep = parse_endpoint("redis://bob:hunter2@127.0.0.1:6379/1")
    for text in (str(ep), repr(ep), ep.redacted(), repr(common_config({"source": "redis://bob:hunter2@h/1"}))):
        assert "hunter2" not in text
    assert str(ep) == "redis://bob:***@127.0.0.1:6379/1"


@pytest.mark.parametrize("url", ["http://h:1", "redis://h:notaport", "redis://h/x", "redis://:pw@/0", "unix://",
                                 "redis://h/-1"])
def test_malformed_urls(url):
    with pytest.raises(ConfigError) as err:
        parse_endpoint(url, role="source")
    assert err.value.exit_code == ExitCode.CONFIG
    assert "source" in err.value.message and err.value.hint


def test_layering_flags_env_file():
    wanted = ("batch_size", "source", "dry_run")
    settings = [s for s in settings_of(ServerOptions) + settings_of(RunOptions) if s.name in wanted]
    file_values = {"source": "redis://file:1", "batch_size": 10, "run": {"batch_size": 20}}
    env = {"MIGRATE_SOURCE": "redis://env:1"}
    merged = resolve(settings, {"batch_size": None, "source": None}, "run", env, file_values)
    assert merged == {"batch_size": 20, "source": "redis://env:1", "dry_run": False}
    merged = resolve(settings, {"batch_size": 5, "source": "redis://flag:1"}, "run", env, file_values)
    assert merged["batch_size"] == 5 and merged["source"] == "redis://flag:1"
    assert resolve(settings, {}, "verify", {"MIGRATE_DRY_RUN": "yes"}, file_values)["batch_size"] == 10


def test_bad_env_value_names_its_origin():
    with pytest.raises(ConfigError, match="MIGRATE_RETRIES"):
        resolve(settings_of(ServerOptions), {}, None, {"MIGRATE_RETRIES": "many"}, {})


def test_config_file(tmp_path):
    path = tmp_path / "migrate.toml"
    path.write_text('source = "redis://127.0.0.1:1/0"\n[run]\nbatch_size = 7\n')
    assert load_file(str(path))["run"]["batch_size"] == 7
    with pytest.raises(ConfigError, match="not found"):
        load_file(str(tmp_path / "missing.toml"))
    path.write_text("source = [unclosed")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_file(str(path))


def test_missing_ca_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="CA file not found"):
        common_config({"source": "rediss://127.0.0.1:1", "tls_ca_file": str(tmp_path / "nope.pem")})
