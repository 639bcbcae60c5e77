"""Neural-network mapping: features, determinism, resume, safe loading, refusal, CLI."""

import json

import numpy as np
import pytest
import torch

import mrfviewer.nn.inference as inference
from mrfviewer.engine import CancelToken
from mrfviewer.errors import Cancelled, MRFError
from mrfviewer.nn.features import fingerprint_features
from mrfviewer.nn.inference import predict, resolve_precision
from mrfviewer.nn.model_io import load_model, save_model
from mrfviewer.nn.training import TrainConfig, config_from_dict, make_training_data, train
from mrfviewer.phantoms import knee_phantom
from mrfviewer.reconstruction import reconstruct_nn
from mrfviewer.settings import ReconstructionSettings
from mrfviewer.synthesis import synthesize_series


@pytest.fixture(scope="module")
def tiny_training(tiny_sequence, tiny_train_settings):
    config = TrainConfig(**tiny_train_settings)
    data = make_training_data(tiny_sequence, config)
    return config, data, train(tiny_sequence, config, data=data)


def test_features_ignore_pd_and_receive_phase():
    rng = np.random.default_rng(0)
    y = torch.from_numpy((rng.standard_normal((10, 6)) + 1j * rng.standard_normal((10, 6))).astype(np.complex64))
    scaled = y * (3.7 * np.exp(1.2j))
    np.testing.assert_allclose(fingerprint_features(y), fingerprint_features(scaled), atol=1e-5)
    assert fingerprint_features(y).shape == (10, 12)


def test_training_learns_and_is_deterministic(tiny_sequence, tiny_training):
    config, data, first = tiny_training
    again = train(tiny_sequence, config, data=data)
    for (k, a), b in zip(first.model.state_dict().items(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    history = first.history
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    mape = first.val_mape["noiseless"]
    assert set(mape) == {"T1", "T2", "T1rho"} and all(np.isfinite(v) and v < 60 for v in mape.values())


def test_resume_continues_exactly(tmp_path, tiny_sequence, tiny_training):
    config, data, _ = tiny_training
    straight = train(tiny_sequence, config, data=data)
    ckpt = tmp_path / "checkpoint.pt"
    token = CancelToken()

    def stop_after_three(fraction, message):
        if message.startswith("epoch 3:"):
            token.cancel()

    with pytest.raises(Cancelled):
        train(tiny_sequence, config, data=data, checkpoint=ckpt, progress=stop_after_three, cancel=token)
    assert ckpt.exists()
    resumed = train(tiny_sequence, config, data=data, checkpoint=ckpt, resume=True)
    assert len(resumed.history) == len(straight.history)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_save_load_round_trip_predicts_the_same(tmp_path, tiny_training):
    _, data, result = tiny_training
    save_model(result, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    y = data.coeffs[-50:].numpy()
    out = predict(loaded, y, precision="float32")
    with torch.no_grad():
        raw, _ = result.model(fingerprint_features(torch.from_numpy(y)))
    expected = torch.exp(raw.double()[:, :-1] * result.sd[:-1] + result.mean[:-1]).numpy()
    np.testing.assert_allclose(out.params, expected, rtol=1e-5)
    assert np.all(out.sd > 0)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    for key in (
        "sequence_hash",
        "parameter_ranges",
        "svd_rank",
        "basis_sha256",
        "normalisation",
        "architecture",
        "training",
        "history",
        "validation_mape_pct",
    ):
        assert key in meta
    with pytest.raises(MRFError, match="exists"):
        save_model(result, tmp_path / "m")


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/mrfviewer-pwned-by-pickle",))


def test_crafted_pickle_is_refused_and_not_run(tmp_path, tiny_training):
    import os
    import pickle

    _, _, result = tiny_training
    folder = save_model(result, tmp_path / "m")
    marker = "/tmp/mrfviewer-pwned-by-pickle"
    if os.path.exists(marker):
        os.remove(marker)
    with open(folder / "model.pt", "wb") as fh:
        pickle.dump({"net.x": _Payload()}, fh)
    with pytest.raises(MRFError, match="refused|cannot read"):
        load_model(folder)
    assert not os.path.exists(marker)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("sequence_hash"), "sequence_hash: Field required"),
        (lambda m: m.update(format="other"), "not an mrfviewer network"),
        (lambda m: m["architecture"].update(hidden=[-1]), r"architecture.hidden\[0\]: Input should be greater"),
        (lambda m: m["architecture"].update(hidden=[True, True]), r"architecture.hidden\[0\]: Input should be a valid"),
        (lambda m: m["architecture"].update(n_inputs=10**12), "architecture.n_inputs: Input should be less"),
        (lambda m: m["architecture"].update(activation=["relu"]), "architecture.activation"),
        (lambda m: m["architecture"].update(hidden=[33, 32]), "do not match"),
        (lambda m: m.update(basis_sha256="0" * 16), "basis does not match"),
    ],
)
def test_invalid_metadata_is_refused(tmp_path, tiny_training, change, message):
    _, _, result = tiny_training
    folder = save_model(result, tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    change(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(MRFError, match=message):
        load_model(folder)


def test_model_for_another_sequence_is_refused(tmp_path, knee_sequence, tiny_training):
    _, _, result = tiny_training
    loaded = load_model(save_model(result, tmp_path / "m"))
    series = synthesize_series(knee_phantom((16, 16)), knee_sequence, snr=None)
    with pytest.raises(MRFError, match="trained for sequence 'tiny'"):
        reconstruct_nn(series, loaded)


def test_nn_reconstruction_gives_maps_and_uncertainty(tmp_path, tiny_sequence, tiny_training):
    _, _, result = tiny_training
    loaded = load_model(save_model(result, tmp_path / "m"))
    ph = knee_phantom((24, 24))
    maps = reconstruct_nn(synthesize_series(ph, tiny_sequence, snr=100), loaded)
    assert {"T1", "T2", "T1rho", "PD", "uncertainty_T1", "uncertainty_T2", "uncertainty_T1rho"} <= set(maps.values)
    muscle = ph.labels == 5
    assert np.nanmean(maps.values["PD"][muscle]) == pytest.approx(0.75, rel=0.2)
    assert np.all(np.isnan(maps.values["T1"][ph.labels == 0]))
    assert maps.provenance.model.precision == resolve_precision("auto")  # what ran, not "auto"
    series = synthesize_series(ph, tiny_sequence)
    with pytest.raises(MRFError, match="precision"):
        reconstruct_nn(series, loaded, ReconstructionSettings(method="nn", nn_precision="x"))
    exact = reconstruct_nn(series, loaded, ReconstructionSettings(method="nn", nn_precision="float32"))
    assert exact.provenance.model.precision == "float32"


def test_bad_training_configs(tmp_path):
    with pytest.raises(MRFError, match="learnign_rate: Extra inputs are not permitted"):
        config_from_dict({"learnign_rate": 1})
    with pytest.raises(MRFError, match="learning_rate: Input should be a valid number"):
        config_from_dict({"learning_rate": "fast"})
    with pytest.raises(MRFError, match="epochs: Input should be a valid integer"):
        config_from_dict({"epochs": 2.5})
    with pytest.raises(MRFError, match="activation"):
        config_from_dict({"activation": "softsign"})
    with pytest.raises(MRFError, match="snr_min"):
        config_from_dict({"snr_min": 10, "snr_max": None})


def test_train_and_reconstruct_through_the_cli(tmp_path, tiny_sequence, tiny_train_settings):
    from mrfviewer.cli import main

    seq = tmp_path / "seq.json"
    tiny_sequence.save(seq)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**tiny_train_settings, "epochs": 2}))
    model = tmp_path / "models" / "tiny"
    assert main(["-q", "train", "--sequence", str(seq), "--config", str(cfg), "--output", str(model)]) == 0
    assert (model / "model.pt").exists() and not (model / "checkpoint.pt").exists()
    series = tmp_path / "s.h5"
    assert main(["-q", "synthesize", "--sequence", str(seq), "--size", "16", "--output", str(series)]) == 0
    out = tmp_path / "nn"
    args = ["-q", "reconstruct", str(series), "--method", "nn", "--model", str(model), "--output", str(out)]
    assert main([*args, "--nn-precision", "float32"]) == 0
    assert (out / "T1uncertaintymap.nii.gz").exists() and (out / "T1rhomap.nii.gz").exists()
    assert json.loads((out / "T1map.json").read_text())["settings"]["nn_precision"] == "float32"
    assert (
        main(
            [
                "-q",
                "reconstruct",
                str(series),
                "--method",
                "nn",
                "--model",
                str(tmp_path),
                "--output",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )


def test_shipped_network_by_name_and_unknown_names():
    from mrfviewer.nn.model_io import resolve_model_path, shipped_models

    names = [p.name for p in shipped_models()]
    assert {"knee_t1_t2_t1rho", "knee_t1_t2_t1rho_fast"} <= set(names)
    assert resolve_model_path("knee_t1_t2_t1rho_fast").name == "knee_t1_t2_t1rho_fast"
    with pytest.raises(MRFError, match="shipped networks: knee_t1_t2_t1rho"):
        resolve_model_path("nonexistent")


def _relative_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a / b - 1)


def test_bfloat16_inference_stays_close_to_float32(tiny_training, tmp_path):
    _, data, result = tiny_training
    model = load_model(save_model(result, tmp_path / "m"))
    y = data.coeffs[-500:].numpy()
    exact = predict(model, y, precision="float32")
    fast = predict(model, y, precision="bfloat16")
    diff = _relative_difference(fast.params, exact.params)
    assert 0 < diff.mean() < 0.005 and diff.max() < 0.03  # bfloat16 really ran, and stayed close
    assert np.all(_relative_difference(fast.pd, exact.pd) < 0.03)
    assert np.all(_relative_difference(fast.sd, exact.sd) < 0.1)


def test_bfloat16_fused_and_plain_layers_agree(tiny_training, tmp_path, monkeypatch):
    _, data, result = tiny_training
    model = load_model(save_model(result, tmp_path / "m"))
    y = data.coeffs[:300].numpy()
    fused = predict(model, y, precision="bfloat16")
    monkeypatch.setattr(inference, "_FUSED_LINEAR", None)
    plain = predict(model, y, precision="bfloat16")
    np.testing.assert_allclose(fused.params, plain.params, rtol=1e-6)

    def unavailable(*args):  # as a torch build without the oneDNN op raises
        raise NotImplementedError("Could not run 'mkldnn::_linear_pointwise' with arguments from the 'CPU' backend")

    monkeypatch.setattr(inference, "_FUSED_LINEAR", unavailable)
    np.testing.assert_allclose(predict(model, y, precision="bfloat16").params, plain.params, rtol=1e-6)
    assert inference._FUSED_LINEAR is None  # tried once, then the plain path


def test_auto_precision_follows_the_cpu_and_unknown_names_are_refused(monkeypatch):
    monkeypatch.setattr(inference, "native_bfloat16", lambda: False)
    assert resolve_precision("auto") == "float32"
    monkeypatch.setattr(inference, "native_bfloat16", lambda: True)
    assert resolve_precision("auto") == "bfloat16"
    assert resolve_precision("float32") == "float32"
    with pytest.raises(MRFError, match="precision"):
        resolve_precision("float16")


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_inference_forward_equals_the_training_forward(activation):
    from mrfviewer.nn.model import MRFNet

    torch.manual_seed(0)
    net = MRFNet(12, 3, [32, 32, 32], activation).eval()
    x = torch.randn(700, 12)
    with torch.no_grad():
        mean, log_var = net(x)
        fast_mean, fast_log_var = inference.inference_forward(net)(x)
        half_mean, _ = inference.inference_forward(net, torch.bfloat16)(x)
    torch.testing.assert_close(fast_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_log_var, log_var, rtol=1e-5, atol=1e-6)
    assert 0 < (half_mean - mean).abs().max() < 0.05
