from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from territory.features.errors import InputError
from territory.pipelines.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_demo_config_loads_and_resolves_paths():
    config = load_config(ROOT / "configs" / "demo.yaml")
    assert config.data.units.is_absolute() and config.data.units.exists()
    assert config.workspace == (ROOT / "workspace").resolve()
    assert config.territories.n_territories == 50
    # Frozen: config objects cannot be changed after validation.
    with pytest.raises(ValidationError, match="frozen"):
        config.territories.tolerance = 0.1


def _write(tmp_path: Path, payload: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(payload))
    return path


def _minimal(tmp_path: Path) -> dict:
    units = tmp_path / "units.csv"
    sales = tmp_path / "sales.csv"
    units.write_text("unit_id,lat,lon\na,1,1\n")
    sales.write_text("unit_id,period,sales\na,2024-01-01,1\n")
    return {"data": {"units": "units.csv", "sales": "sales.csv"}}


def test_relative_paths_are_read_from_the_config_folder(tmp_path):
    config = load_config(_write(tmp_path, _minimal(tmp_path)))
    assert config.data.units == (tmp_path / "units.csv").resolve()


def test_unknown_key_names_key_and_file(tmp_path):
    payload = _minimal(tmp_path)
    payload["territories"] = {"n_territoires": 3}
    with pytest.raises(InputError) as err:
        load_config(_write(tmp_path, payload))
    msg = str(err.value)
    assert "run.yaml" in msg and "territories.n_territoires" in msg and "unknown key" in msg


def test_wrong_type_names_key_and_value(tmp_path):
    payload = _minimal(tmp_path)
    payload["forecast"] = {"horizon": "twelve"}
    with pytest.raises(InputError) as err:
        load_config(_write(tmp_path, payload))
    assert "forecast.horizon" in str(err.value) and "twelve" in str(err.value)


def test_missing_data_file_names_key(tmp_path):
    payload = _minimal(tmp_path)
    payload["data"]["alignment"] = "nowhere.csv"
    with pytest.raises(InputError) as err:
        load_config(_write(tmp_path, payload))
    assert "data.alignment" in str(err.value) and "nowhere.csv" in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_bad_yaml_and_bad_as_of(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(path)
    payload = _minimal(tmp_path)
    payload["as_of"] = "last tuesday"
    with pytest.raises(InputError, match="as_of"):
        load_config(_write(tmp_path, payload))


def test_fingerprint_is_stable_and_sensitive(tmp_path):
    path = _write(tmp_path, _minimal(tmp_path))
    a, b = load_config(path), load_config(path)
    assert a.fingerprint() == b.fingerprint()
    c = load_config(path, {"run_name": "other"})
    assert c.fingerprint() != a.fingerprint()
