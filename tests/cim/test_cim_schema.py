import json

from data_models import generate


def test_schema_files_in_sync_with_models():
    stale = generate.check_schemas()
    assert stale == [], f"schema files out of date, run `python -m data_models.generate`: {stale}"


def test_check_cli_exit_codes(tmp_path, capsys):
    assert generate.main(["--check", "--dir", str(tmp_path)]) == 1  # empty directory: everything missing
    assert "building.json" in capsys.readouterr().err
    assert generate.main(["--dir", str(tmp_path)]) == 0
    assert generate.main(["--check", "--dir", str(tmp_path)]) == 0
    # a modified file and an obsolete file are both reported
    (tmp_path / "building.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "obsolete.json").write_text("{}\n", encoding="utf-8")
    assert generate.check_schemas(tmp_path) == ["building.json", "obsolete.json"]
    assert generate.main(["--check", "--dir", str(tmp_path)]) == 1
    generate.main(["--dir", str(tmp_path)])
    assert generate.check_schemas(tmp_path) == []
    assert not (tmp_path / "obsolete.json").exists()


def test_schema_files_are_stable_and_well_formed():
    a = generate.render_schemas()
    b = generate.render_schemas()
    assert a == b
    assert set(a) == {f"{stem}.json" for stem in generate.TOP_LEVEL}
    for name, text in a.items():
        assert text.endswith("}\n")
        doc = json.loads(text)
        assert doc["$schema"].endswith("2020-12/schema")
        assert doc["$id"].endswith(name)
        assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_city_object_schema_is_discriminated():
    doc = json.loads(generate.render_schemas()["city_object.json"])
    assert doc["discriminator"]["propertyName"] == "type"
    assert {"Building", "Road", "LandCover", "WaterBody", "Vegetation", "Sensor"} <= set(
        doc["discriminator"]["mapping"]
    )
    edits = json.loads(generate.render_schemas()["scenario_edit.json"])
    assert edits["discriminator"]["propertyName"] == "kind"
