"""nanochat's current (2026) checkpoint layout with torch: a nanochat-2026 model exported and
imported back gives identical logits (a sliding window the long sequence exceeds included), and a
checkpoint written the way karpathy/nanochat@92d63d4 writes one imports to logits equal to a
torch forward pass written here from nanochat's ``gpt.py`` facts. Heavy group (docs/export.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from export_helpers import SEQUENCES, jax_logits, make_run, require
from nanochat_tui.cli import main

pytestmark = pytest.mark.heavy

# nanochat's GPTConfig fields: exactly what meta_<step>.json's model_config holds
GPT_CONFIG_FIELDS = {
    "sequence_len",
    "vocab_size",
    "n_layer",
    "n_head",
    "n_kv_head",
    "n_embd",
    "window_pattern",
}
# sequence 256 → nanochat's S window is ceil(256 / 4 / 128) * 128 = 128 tokens: the 200-token
# sequence below attends past it on the S layer
MODEL_2026 = {
    "model.recipe": "nanochat-2026",
    "model.n_kv_head": 2,
    "model.vocab_size": 500,
    "model.sequence_len": 256,
    "model.window_pattern": "SL",
    "train.total_batch_size": 1024,
}
LONG = [(7 * i + 3) % 500 for i in range(200)]


@pytest.fixture(scope="module")
def needs_torch() -> None:
    require("torch", "tiktoken")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("heavy-2026")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_TUI_HOME", str(home))
        return make_run(home, "new", MODEL_2026)


def test_2026_round_trip_gives_identical_logits(needs_torch, run_dir, tmp_path):
    import torch

    from nanochat_tui.jax_engine.inference import ChatModel

    out, back = tmp_path / "nc", tmp_path / "back"
    assert main(["export", str(run_dir), str(out), "--format", "nanochat"]) == 0
    meta = json.loads((out / "meta_000010.json").read_text())
    assert set(meta["model_config"]) == GPT_CONFIG_FIELDS
    assert meta["model_config"]["window_pattern"] == "SL"
    state = torch.load(out / "model_000010.pt", weights_only=True)
    assert state["value_embeds.1.weight"].shape == (512, 64)  # last layer, rows padded to 64
    assert state["transformer.h.1.attn.ve_gate.weight"].shape == (2, 12)
    assert state["smear_gate.weight"].shape == (1, 24) and "value_embeds.0.weight" not in state
    assert main(["import", str(out), str(back)]) == 0
    m = ChatModel.load(back).config.model
    assert (m.recipe, m.window_pattern, m.window_sizes()) == ("nanochat-2026", "SL", [128, None])
    for ids in (*SEQUENCES, LONG):
        assert np.array_equal(jax_logits(back, ids), jax_logits(run_dir, ids))


def _stock_2026(folder: Path, run_dir: Path, pattern: str) -> dict:
    """model/meta as nanochat's base_train saves them (torch.compile's ``_orig_mod.`` prefix, bf16
    wte and value embeddings, the meta's extra fields), random weights; returns the state."""
    import torch

    from nanochat_tui.export.tiktoken_pkl import ranks_of, write_pkl
    from nanochat_tui.jax_engine.tokenizer import SPLIT_PATTERN, Tokenizer

    tok = Tokenizer.load(run_dir / "tokenizer.json")
    vocab, rows, d, heads, kv, layers, hd = tok.vocab_size, 512, 96, 3, 1, 3, 32
    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    state = {
        "transformer.wte.weight": rand(rows, d, scale=0.8).bfloat16(),
        "lm_head.weight": rand(rows, d),
        "resid_lambdas": 1.0 + rand(layers, scale=0.1),
        "x0_lambdas": 0.2 + rand(layers, scale=0.1),
        "smear_gate.weight": rand(1, 24),
        "smear_lambda": torch.tensor([0.7]),
        "backout_lambda": torch.tensor([0.3]),
    }
    for i in range(layers):
        p = f"transformer.h.{i}"
        state[f"{p}.attn.c_q.weight"] = rand(heads * hd, d)
        state[f"{p}.attn.c_k.weight"] = rand(kv * hd, d)
        state[f"{p}.attn.c_v.weight"] = rand(kv * hd, d)
        state[f"{p}.attn.c_proj.weight"] = rand(d, d)
        state[f"{p}.mlp.c_fc.weight"] = rand(4 * d, d)
        state[f"{p}.mlp.c_proj.weight"] = rand(d, 4 * d)
        if i % 2 == (layers - 1) % 2:
            state[f"{p}.attn.ve_gate.weight"] = rand(kv, 12)
            state[f"value_embeds.{i}.weight"] = rand(rows, kv * hd).bfloat16()
    folder.mkdir(parents=True)
    torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, folder / "model_000030.pt")
    config = {"sequence_len": 256, "vocab_size": vocab, "n_layer": layers, "n_head": heads}
    config |= {"n_kv_head": kv, "n_embd": d, "window_pattern": pattern}
    meta = {"step": 30, "val_bpb": 1.25, "model_config": config, "user_config": {"depth": 3}}
    meta |= {"device_batch_size": 4, "max_seq_len": 256, "total_batch_size": 1024}
    meta |= {"dataloader_state_dict": {}, "loop_state": {"min_val_bpb": 1.25}}
    (folder / "meta_000030.json").write_text(json.dumps(meta, indent=2))
    ranks, specials = ranks_of(tok)
    write_pkl(folder / "tokenizer.pkl", SPLIT_PATTERN, ranks, specials, "rustbpe")
    return {k: v.float() for k, v in state.items()}


def _nanochat_forward(sd: dict, config: dict, ids: list[int]):
    """nanochat's current GPT.forward (no cache) in plain torch, from the facts in its gpt.py:
    rotary base 100000 rotated by -θ, QK-norm then ×1.2, ve gate 3·σ(x[:12]), smear σ(x[:24])·λ,
    resid/x0 scalars before each block, backout after layer n//2, soft-cap 15."""
    import torch
    import torch.nn.functional as F

    n, d, h, kv = (config[k] for k in ("n_layer", "n_embd", "n_head", "n_kv_head"))
    hd, seq, t = d // h, config["sequence_len"], len(ids)
    short = math.ceil(seq / 4 / 128) * 128
    pattern = config["window_pattern"]
    windows = [short if pattern[i % len(pattern)] == "S" else seq for i in range(n)]
    windows[-1] = seq
    idx = torch.tensor([ids])

    def rms(x):
        return F.rms_norm(x, (x.size(-1),))

    inv = 1.0 / (100000 ** (torch.arange(0, hd, 2).float() / hd))
    freqs = torch.outer(torch.arange(t).float(), inv)
    cos, sin = freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]

    def rotate(x):
        a, b = x[..., : hd // 2], x[..., hd // 2 :]
        return torch.cat([a * cos + b * sin, -a * sin + b * cos], dim=-1)

    x = rms(sd["transformer.wte.weight"][idx])
    gate = sd["smear_lambda"] * torch.sigmoid(x[:, 1:, :24] @ sd["smear_gate.weight"].T)
    x = torch.cat([x[:, :1], x[:, 1:] + gate * x[:, :-1]], dim=1)
    x0, backout = x, None
    qi, kj = torch.arange(t)[:, None], torch.arange(t)[None, :]
    for i in range(n):
        p = f"transformer.h.{i}."
        x = sd["resid_lambdas"][i] * x + sd["x0_lambdas"][i] * x0
        a = rms(x)
        q = (a @ sd[p + "attn.c_q.weight"].T).view(1, t, h, hd)
        k = (a @ sd[p + "attn.c_k.weight"].T).view(1, t, kv, hd)
        v = (a @ sd[p + "attn.c_v.weight"].T).view(1, t, kv, hd)
        if f"value_embeds.{i}.weight" in sd:
            ve = sd[f"value_embeds.{i}.weight"][idx].view(1, t, kv, hd)
            v = v + 3 * torch.sigmoid(a[..., :12] @ sd[p + "attn.ve_gate.weight"].T)[..., None] * ve
        q, k = rms(rotate(q)) * 1.2, rms(rotate(k)) * 1.2
        k, v = k.repeat_interleave(h // kv, dim=2), v.repeat_interleave(h // kv, dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(hd)
        visible = (kj <= qi) & (qi - kj <= windows[i])
        probs = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
        y = torch.einsum("bhts,bshd->bthd", probs, v).reshape(1, t, d)
        x = x + y @ sd[p + "attn.c_proj.weight"].T
        m = rms(x) @ sd[p + "mlp.c_fc.weight"].T
        x = x + F.relu(m).square() @ sd[p + "mlp.c_proj.weight"].T
        if i == n // 2:
            backout = x
    x = rms(x - sd["backout_lambda"] * backout)
    logits = (x @ sd["lm_head.weight"].T)[..., : config["vocab_size"]]
    return (15 * torch.tanh(logits / 15))[0].numpy()


@pytest.mark.parametrize("pattern", ["SSSL", "L"])
def test_a_checkpoint_as_nanochat_writes_it_imports_to_its_logits(
    needs_torch, run_dir, tmp_path, pattern
):
    from nanochat_tui.jax_engine.inference import ChatModel

    folder = tmp_path / "base_checkpoints" / "d3"
    state = _stock_2026(folder, run_dir, pattern)
    out = tmp_path / "imported"
    assert main(["import", str(folder), str(out)]) == 0
    cm = ChatModel.load(out)
    assert cm.config.model.recipe == "nanochat-2026" and cm.meta["stage"] == "pretrain"
    config = json.loads((folder / "meta_000030.json").read_text())["model_config"]
    for ids in (SEQUENCES[0], LONG):
        want = _nanochat_forward(state, config, ids)
        np.testing.assert_allclose(jax_logits(out, ids), want, atol=2e-4, rtol=0)


def test_an_unsupported_nanochat_feature_is_one_message(needs_torch, run_dir, tmp_path, capsys):
    import torch

    folder = tmp_path / "base_checkpoints" / "d3"
    _stock_2026(folder, run_dir, "SSSL")
    state = torch.load(folder / "model_000030.pt", weights_only=True)
    del state["_orig_mod.smear_gate.weight"], state["_orig_mod.smear_lambda"]
    torch.save(state, folder / "model_000030.pt")
    assert main(["import", str(folder), str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "an intermediate nanochat revision" in err and "without smear" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()
