import pytest
from conftest import ROOT

from labeler.config import ConfigError, dotted_override, load_config


def test_demo_config_is_valid():
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    assert cfg.synthesize.engine.model.startswith("offline:")
    assert cfg.corpus.path == "data/demo/docs.jsonl"
    # Relative paths resolve against the project, wherever the command runs.
    assert (ROOT / "data" / "demo" / "docs.jsonl").samefile(cfg.resolve_path(cfg.corpus.path))


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


BASE = """
corpus: {path: x.jsonl}
synthesize: {engine: {model: m}}
judge: {engine: {model: m}}
"""


def test_unknown_key_names_key_and_file(tmp_path):
    p = _write(tmp_path, BASE + "mine: {depht: 10}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "mine.depht" in msg and "unknown key" in msg


def test_wrong_type_names_key_and_value(tmp_path):
    p = _write(tmp_path, BASE.replace("{model: m}}\njudge", "{model: m, batch_size: lots}}\njudge"))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "synthesize.engine.batch_size" in str(e.value) and "'lots'" in str(e.value)


def test_missing_section_and_bad_window(tmp_path):
    with pytest.raises(ConfigError, match="judge: required key is missing"):
        load_config(_write(tmp_path, "corpus: {path: x}\nsynthesize: {engine: {model: m}}\n"))
    with pytest.raises(ConfigError, match="rank_window upper bound 50 exceeds depth 30"):
        load_config(_write(tmp_path, BASE + "mine: {rank_window: [2, 50]}\n"))


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "corpus: [unclosed\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_are_validated(tmp_path):
    p = _write(tmp_path, BASE)
    cfg = load_config(p, dotted_override("mine.depth=12"))
    assert cfg.mine.depth == 12
    with pytest.raises(ConfigError, match="mine.depth"):
        load_config(p, dotted_override("mine.depth=-1"))


def test_section_hash_tracks_changes(tmp_path):
    a = load_config(_write(tmp_path, BASE))
    b = load_config(_write(tmp_path, BASE + "mine: {depth: 31}\n"))
    assert a.section_hash("mine") != b.section_hash("mine")
    assert a.section_hash("judge") == b.section_hash("judge")


def test_every_shipped_config_validates():
    """The example configs are documentation: a key the schema no longer has must fail here."""
    paths = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(paths) >= 4
    for p in paths:
        cfg = load_config(p)
        assert cfg.distill.kind in ("generative", "cross_encoder", "bi_encoder"), p


def test_in_process_engine_needs_one_device():
    import pytest
    from pydantic import ValidationError

    from labeler.config import EngineConfig

    assert EngineConfig(model="m", in_process=True).in_process
    with pytest.raises(ValidationError, match="tensor_parallel_size 1"):
        EngineConfig(model="m", in_process=True, tensor_parallel_size=2)
