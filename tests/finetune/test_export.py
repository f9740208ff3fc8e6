"""Export: errors for people, and no half-written model or catalogue entry after a failure."""

from __future__ import annotations

import errno
import json

import pytest

from appkit.models.catalogue import get_spec, list_models
from appkit.errors import ModelNotAvailableError
from finetune import export as export_mod
from finetune.export import ExportError, export_run, exports_dir
from finetune.runs import Run


@pytest.fixture
def finished_run(tmp_path, make_tiny):
    """A finished LoRA run over a tiny model (its base GGUF is a stand-in file)."""
    from finetune.trainer import TrainConfig, save_weights, wrap_lora

    config = TrainConfig(base="smollm2-135m", data="-", r=2, targets=("q_proj",))
    model = wrap_lora(make_tiny(0), config)
    base_gguf = tmp_path / "base.gguf"
    base_gguf.write_bytes(b"GGUF")
    run = Run.create("tiny-run", {"base": "smollm2-135m", "base_gguf": str(base_gguf),
                                  "method": "lora", "config": config.to_dict(),
                                  "data_hash": "abc"})
    save_weights(model, run.final_dir, "lora")
    run.update(status="finished", step=3)
    return run


def _no_trace(name: str) -> None:
    leftovers = [p for p in exports_dir().rglob("*")] if exports_dir().exists() else []
    assert leftovers == []
    assert not [m for m in list_models() if m.name.startswith(name)]
    with pytest.raises(ModelNotAvailableError):
        get_spec(f"{name}-q4_k_m")


def test_disk_full_during_export_leaves_no_model_and_no_catalogue_entry(finished_run,
                                                                        monkeypatch):
    def write_then_fail(base, change, out, **kw):
        out.write_bytes(b"half a model")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_mod, "write_merged_gguf", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        export_run(finished_run, quants=("q4_k_m",), name="tuned")
    _no_trace("tuned")
    registry = exports_dir().parent.parent / "models" / "registry.json"
    assert not registry.exists() or "tuned" not in json.loads(registry.read_text())


def test_interrupted_quantization_leaves_nothing(finished_run, monkeypatch):
    monkeypatch.setattr(export_mod, "write_merged_gguf",
                        lambda base, change, out, **kw: out.write_bytes(b"f16") and out)

    def interrupted(src, dst, quant, **kw):
        dst.write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(export_mod, "quantize_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_run(finished_run, quants=("q4_k_m",), name="tuned")
    _no_trace("tuned")


def test_a_model_that_does_not_load_is_not_registered(finished_run, monkeypatch):
    monkeypatch.setattr(export_mod, "write_merged_gguf",
                        lambda base, change, out, **kw: out.write_bytes(b"f16") and out)
    monkeypatch.setattr(export_mod, "quantize_gguf",
                        lambda src, dst, quant, **kw: dst.write_bytes(b"q") and dst)
    with pytest.raises(ExportError, match="cannot load"):
        export_run(finished_run, quants=("q4_k_m",), name="tuned")
    _no_trace("tuned")


def test_successful_export_registers_with_lineage(finished_run, monkeypatch):
    monkeypatch.setattr(export_mod, "write_merged_gguf",
                        lambda base, change, out, **kw: out.write_bytes(b"f16") and out)
    monkeypatch.setattr(export_mod, "quantize_gguf",
                        lambda src, dst, quant, **kw: dst.write_bytes(b"q") and dst)
    monkeypatch.setattr(export_mod, "check_loads", lambda path, lora_path=None: None)
    result = export_run(finished_run, quants=("q8_0", "q4_k_m"), name="tuned")
    assert [m.name for m in result.models] == ["tuned-q8_0", "tuned-q4_k_m"]
    spec = get_spec("tuned-q4_k_m")
    assert spec.local_path.endswith("tuned-q4_k_m.gguf")
    assert spec.lineage["base"] == "smollm2-135m" and spec.lineage["run"] == "tiny-run"
    assert spec.lineage["data_hash"] == "abc" and spec.lineage["quant"] == "q4_k_m"
    assert not (result.folder / "tuned-f16.gguf").exists()  # not asked for
    assert finished_run.info["exports"]["tuned-q4_k_m"] == spec.local_path


def test_a_second_export_keeps_the_first_ones_files(finished_run, monkeypatch):
    monkeypatch.setattr(export_mod, "write_merged_gguf",
                        lambda base, change, out, **kw: out.write_bytes(b"f16") and out)
    monkeypatch.setattr(export_mod, "quantize_gguf",
                        lambda src, dst, quant, **kw: dst.write_bytes(b"q") and dst)
    monkeypatch.setattr(export_mod, "write_lora_gguf",
                        lambda base, change, out: out.write_bytes(b"lora") and out)
    monkeypatch.setattr(export_mod, "check_loads", lambda path, lora_path=None: None)
    export_run(finished_run, quants=("q8_0",), name="tuned")
    export_run(finished_run, quants=("q4_k_m",), name="tuned")
    export_run(finished_run, mode="lora", name="tuned")
    for name in ("tuned-q8_0", "tuned-q4_k_m"):
        assert __import__("pathlib").Path(get_spec(name).local_path).exists()
    assert __import__("pathlib").Path(get_spec("tuned-lora").lineage["lora_path"]).exists()
    assert sorted(p.name for p in exports_dir().rglob("*")) == [
        "export.json", "tuned", "tuned-lora.gguf", "tuned-q4_k_m.gguf", "tuned-q8_0.gguf"]


def test_unknown_quantization_is_refused_before_any_work(finished_run):
    with pytest.raises(ExportError, match="unknown quantization 'q3'.*f16, q8_0, q4_k_m"):
        export_run(finished_run, quants=("q3",))


def test_an_interrupted_run_cannot_be_exported_and_says_how_to_resume(tmp_path):
    run = Run.create("half", {"base": "smollm2-135m", "method": "lora"})
    run.new_checkpoint_dir(4)[0].joinpath("state.json").write_text("{}")
    tmp, final = run.new_checkpoint_dir(4)
    (tmp / "state.json").write_text("{}")
    run.commit_checkpoint(tmp, final)
    run.update(status="interrupted", step=4, total_steps=10)
    with pytest.raises(ExportError, match="no final weights.*--resume half"):
        export_run("half")


def test_lora_pairs_read_back_with_the_peft_scale(finished_run):
    change = export_mod.read_change(finished_run)
    assert set(change.lora) == {f"model.layers.{i}.self_attn.q_proj.weight" for i in range(2)}
    pair = next(iter(change.lora.values()))
    assert pair.scale == pytest.approx(16 / 2)
    assert change.delta("model.layers.0.self_attn.q_proj.weight").shape == (32, 32)


def test_llama_q_rows_are_permuted_like_llama_cpp():
    np = pytest.importorskip("numpy")

    class Field:
        def __init__(self, v):
            self.v = v

        def contents(self):
            return self.v

    class Reader:
        fields = {"general.architecture": Field("llama"),
                  "llama.attention.head_count": Field(2),
                  "llama.attention.head_count_kv": Field(1)}

    rows = np.arange(8, dtype=np.float32).reshape(8, 1)
    q = export_mod.permute_rows(Reader(), "blk.0.attn_q.weight", rows).ravel().tolist()
    assert q == [0, 2, 1, 3, 4, 6, 5, 7]  # per head: interleave the two rotary halves
    k = export_mod.permute_rows(Reader(), "blk.0.attn_k.weight", rows).ravel().tolist()
    assert k == [0, 4, 1, 5, 2, 6, 3, 7]
    v = export_mod.permute_rows(Reader(), "blk.0.attn_v.weight", rows).ravel().tolist()
    assert v == list(range(8))
