import json

import numpy as np
import pytest

from mrfviewer.errors import MRFError
from mrfviewer.sequence import Readout, SpinLock, load_sequence, sequence_from_dict, sequence_from_json


def _readout(**kw):
    block = {"type": "fisp", "flip_angle_deg": [10, 20, 30], "tr_ms": 6.0, "te_ms": 2.0}
    block.update(kw)
    return {"blocks": [block]}


def test_shipped_knee_sequence_has_published_structure(knee_sequence):
    assert knee_sequence.n_timepoints == 1750
    kinds = [b.type for b in knee_sequence.blocks]
    assert kinds[:6] == ["inversion", "fisp", "fisp", "flash", "t2prep", "flash"]
    assert [b.tsl_ms for b in knee_sequence.blocks if isinstance(b, SpinLock)] == [2, 4, 7, 13, 24, 45]
    lengths = [b.n for b in knee_sequence.readouts]
    assert lengths == [250, 250, 250, 250] + [125] * 6
    fa = np.concatenate([r.flip_angle_deg for r in knee_sequence.readouts])
    assert fa.min() >= 5 and fa.max() <= 60
    assert "ASSUMPTION" in knee_sequence.description


def test_scalar_and_list_fields_broadcast():
    seq = sequence_from_dict(_readout(tr_ms=[6, 7, 8]))
    r = seq.blocks[0]
    assert isinstance(r, Readout)
    np.testing.assert_array_equal(r.tr_ms, [6, 7, 8])
    np.testing.assert_array_equal(r.te_ms, [2, 2, 2])
    np.testing.assert_array_equal(r.phase_deg, [0, 0, 0])
    np.testing.assert_allclose(seq.sample_times_ms(), [2, 8, 15])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"blocks": [{"type": "saturation"}]}, "blocks[0]: Input tag 'saturation' found using 'type' does not match"),
        (
            {"blocks": [{"type": "inversion", "ti_ms": -1}, *_readout()["blocks"]]},
            "ti_ms: Input should be greater than",
        ),
        (_readout(te_ms=7.0), "te_ms (7) is longer than tr_ms (6)"),
        (_readout(tr_ms=[6, 6]), "disagree in length"),
        (_readout(flip_angle_deg=[10, "x"]), "flip_angle_deg[1]: Input should be a valid number (got 'x')"),
        (_readout(tr_ms=0), "tr_ms: Input should be greater than or equal to 0.001"),
        (_readout(tr_ms=1e-320), "tr_ms: Input should be greater than or equal to 0.001"),
        (_readout(flip_angle_deg=[200]), "flip_angle_deg[0]: Input should be less than or equal to 180"),
        ({"blocks": [{"type": "inversion", "ti": 20}]}, "blocks[0].ti_ms: Field required"),
        ({"blocks": [{"type": "delay", "duration_ms": 5}]}, "at least one fisp or flash"),
        ({"blocks": []}, "blocks: List should have at least 1 item"),
        ([1, 2], "JSON object"),
        (
            {"blocks": _readout()["blocks"], "dummy_trains": -1},
            "dummy_trains: Input should be greater than or equal to 0",
        ),
        ({"blocks": _readout(flip_angle_deg=[10] * 20000)["blocks"] * 10, "dummy_trains": 100}, "dummy trains of"),
        (_readout(flip_angle_deg=[float("nan")]), "finite"),
        ({"blocks": _readout()["blocks"], "name": "../x\x00"}, "name: contains control"),
    ],
)
def test_invalid_sequences_name_the_problem(raw, message):
    with pytest.raises(MRFError) as info:
        sequence_from_dict(raw)
    assert message in str(info.value)


def test_bad_json_and_missing_file_give_clear_errors(tmp_path):
    with pytest.raises(MRFError, match="not valid JSON"):
        sequence_from_json("{", source="x.json")
    with pytest.raises(MRFError, match="not found"):
        load_sequence(tmp_path / "missing.json")


def test_hash_ignores_name_and_description_but_not_physics(knee_sequence):
    raw = json.loads(knee_sequence.to_json())
    raw["name"], raw["description"] = "other", "changed"
    assert sequence_from_dict(raw).hash == knee_sequence.hash
    raw["blocks"][0]["ti_ms"] = 21.0
    assert sequence_from_dict(raw).hash != knee_sequence.hash


def test_json_round_trip_keeps_hash(tmp_path, knee_sequence):
    path = tmp_path / "seq.json"
    knee_sequence.save(path)
    again = load_sequence(path)
    assert again.hash == knee_sequence.hash
    assert again.n_timepoints == knee_sequence.n_timepoints


def test_preparation_markers(knee_sequence):
    markers = knee_sequence.preparation_markers()
    assert markers[0] == (0, "IR")
    assert markers[1] == (750, "T2prep 40 ms")
    assert [m[0] for m in markers[2:]] == [1000 + 125 * i for i in range(6)]
