"""benchmarks/step_profile.py on the tiny shape: the real step's trace is attributed to the
project's source, and the matmul FLOPs it reads from the compiled HLO agree with the model's own
estimate (an independent count: parameter shapes, not HLO text)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "step_profile.py"


@pytest.mark.slow
def test_step_profile_attributes_the_step_to_source_lines(tmp_path):
    out = tmp_path / "profile.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--configs", "tiny", "--steps", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = json.loads(out.read_text())
    files = {r["key"]: r for r in result["by_file"]}
    for name in ("jax_engine/model.py", "jax_engine/losses.py", "jax_engine/muon.py"):
        assert files[name]["ms"] > 0, files.keys()
    assert sum(r["share"] for r in result["rows"]) == pytest.approx(1.0)
    assert sum(r["ms"] for r in result["rows"]) == pytest.approx(result["op_ms"])
    # most of the time lands on project lines, not on unattributed XLA ops
    ours = sum(r["share"] for r in result["by_file"] if r["key"].startswith("jax_engine/"))
    assert ours > 0.8, result["by_file"]
    dense = [r for r in result["rows"] if r["key"].endswith(" dense")]
    assert dense and dense[0]["gflop"] > 0
    # fwd+bwd matmuls (6N + attention) plus Muon's Newton–Schulz and the masked parts of
    # attention blocks: at least the model's estimate, and not wildly more
    assert result["model_gflop"] * 0.95 <= result["dot_gflop"] <= result["model_gflop"] * 2.5
    assert "dense" in proc.stdout and "GFLOP/s" in proc.stdout


def _load():
    import importlib.util

    spec = importlib.util.spec_from_file_location("step_profile", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


# The shape of an optimized GPU module's text: a cuBLAS GEMM custom call (tuple result with its
# workspace), a Triton GEMM fusion calling a computation with a dot, and the stack-frame tables
# (as XLA writes them, a frame's parent_frame_id is its parent's row + 1: row 3's parent is row 2).
GPU_HLO = """HloModule jit_step, is_scheduled=true

%gemm_fusion_dot.1_computation (parameter_0: bf16[64,32], parameter_1: bf16[32,16]) -> bf16[64,16] {
  %parameter_0 = bf16[64,32]{1,0} parameter(0)
  %parameter_1 = bf16[32,16]{1,0} parameter(1)
  ROOT %dot.1 = bf16[64,16]{1,0} dot(%parameter_0, %parameter_1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

ENTRY %main.9 (x.1: bf16[128,64], w.1: bf16[64,256]) -> bf16[128,256] {
  %x.1 = bf16[128,64]{1,0} parameter(0)
  %w.1 = bf16[64,256]{1,0} parameter(1)
  %custom-call.3 = (bf16[128,256]{1,0}, s8[4194304]{0}) custom-call(%x.1, %w.1), custom_call_target="__cublas$lt$matmul", metadata={op_name="jit(step)/dot_general" stack_frame_id=3}, backend_config={"gemm_backend_config":{"dot_dimension_numbers":{"lhs_contracting_dimensions":["1"],"rhs_contracting_dimensions":["0"],"lhs_batch_dimensions":[],"rhs_batch_dimensions":[]}}}
  %gemm_fusion_dot.1 = bf16[64,16]{1,0} fusion(%x.1, %w.1), kind=kCustom, calls=%gemm_fusion_dot.1_computation, metadata={op_name="jit(step)/dot_general" stack_frame_id=2}
  ROOT %get-tuple-element.1 = bf16[128,256]{1,0} get-tuple-element(%custom-call.3), index=0
}

FileNames
1 "/src/nanochat_tui/jax_engine/step.py"
2 "/src/nanochat_tui/jax_engine/model.py"
3 "/site-packages/flax/nnx/nn/linear.py"

FunctionNames
1 "train_step"
2 "dense"
3 "Linear.__call__"

FileLocations
1 {file_name_id=1 function_name_id=1 line=190 end_line=190 column=1 end_column=2}
2 {file_name_id=2 function_name_id=2 line=111 end_line=111 column=1 end_column=2}
3 {file_name_id=3 function_name_id=3 line=422 end_line=422 column=1 end_column=2}

StackFrames
1 {file_location_id=1 parent_frame_id=1}
2 {file_location_id=2 parent_frame_id=2}
3 {file_location_id=3 parent_frame_id=3}
"""


def test_hlo_parser_reads_gemm_custom_calls_fusions_and_frame_chains():
    mod = _load()
    hlo = mod.parse_hlo(GPU_HLO.replace("/nanochat_tui/", mod.PROJECT))
    assert hlo.flops_of["custom-call.3"] == 2 * 128 * 256 * 64
    assert hlo.flops_of["gemm_fusion_dot.1"] == 2 * 64 * 16 * 32
    assert "get-tuple-element.1" not in hlo.flops_of
    # the GEMM's frame is flax's Linear, called from the model's dense, called from the step
    chain = hlo.chain(hlo.frame_of["custom-call.3"])
    assert [(f.rsplit("/", 1)[-1], fn, line) for f, fn, line in chain] == [
        ("linear.py", "Linear.__call__", 422),
        ("model.py", "dense", 111),
        ("step.py", "train_step", 190),
    ]
    events = [
        {"dur": 300.0, "args": {"hlo_op": "custom-call.3", "hlo_module": "jit_step"}},
        {"dur": 100.0, "args": {"hlo_op": "gemm_fusion_dot.1", "hlo_module": "jit_step"}},
        {"dur": 100.0, "args": {"hlo_op": "get-tuple-element.1", "hlo_module": "jit_step"}},
    ]
    rows = {r["key"]: r for r in mod.attribute(events, hlo, "line", steps=1)}
    dense = rows["jax_engine/model.py:111 dense"]
    assert dense["ms"] == pytest.approx(0.4)  # both GEMMs were made on that line
    assert dense["gflop"] == pytest.approx((2 * 128 * 256 * 64 + 2 * 64 * 16 * 32) / 1e9)
    assert rows["(XLA) get-tuple-element"]["share"] == pytest.approx(0.2)
