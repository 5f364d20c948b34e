"""``nanochat-tui moe PREFAB [--set k=v ...]``: total vs active params, FLOPs and memory."""

from __future__ import annotations

from typing import Any


def _human(n: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"


class MoECommand:
    def add_arguments(self, name: str, parser: Any) -> None:
        parser.add_argument("prefab", help="prefab name or YAML path")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    def run(self, args: Any) -> int:
        from nanochat_tui.bundled.moe.estimates import moe_estimates
        from nanochat_tui.bundled.moe.hooks import moe_config
        from nanochat_tui.config import load_config
        from nanochat_tui.config.estimates import flops_per_token, num_params
        from nanochat_tui.errors import UserError

        config = load_config(args.prefab, args.set)
        moe = moe_config(config)
        if moe is None:
            raise UserError(
                f"{args.prefab} has no plugins.moe section switched on",
                "add --set plugins.moe.num_experts=8 (or a plugins.moe section in the prefab)",
            )
        est = moe_estimates(config, moe)
        m = config.model
        print(
            f"MoE: {moe.num_experts} experts, top-{moe.top_k}, expert dim {moe.hidden(m.model_dim)}"
        )
        print(f"params      total {_human(est.total_params)}  active {_human(est.active_params)}"
              f"  (dense model: {_human(num_params(m))})")  # fmt: skip
        print(f"FLOPs/token active {_human(est.flops_per_token)}  all experts "
              f"{_human(est.total_flops_per_token)}  computed (capacity padding) "
              f"{_human(est.padded_flops_per_token)}  (dense: {_human(flops_per_token(m))})")  # fmt: skip
        print(f"memory      {est.memory_bytes / 2**30:.2f} GiB per device per step")
        return 0


COMMAND = MoECommand()
