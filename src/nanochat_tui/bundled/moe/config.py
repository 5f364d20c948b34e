"""The ``plugins.moe`` config section (validated whenever a config loads)."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MoEConfig(BaseModel):
    """Every block's MLP becomes ``num_experts`` ReLU² experts behind a top-k router."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    enabled: bool = Field(True, description="Replace every block's MLP with an MoE layer")
    num_experts: int = Field(8, ge=2, le=256, description="Experts per layer")
    top_k: int = Field(2, ge=1, le=16, description="Experts each token is routed to")
    expert_dim: int = Field(
        0, ge=0, le=65536, description="Hidden width of one expert; 0 = 4·model_dim / top_k"
    )
    shared_expert: bool = Field(False, description="Add one always-on expert (DeepSeekMoE)")
    capacity_factor: float = Field(
        1.25, ge=0, le=64, description="Expert capacity = factor·tokens·k/E; 0 = dropless"
    )
    lb_loss_coef: float = Field(
        0.01, ge=0, le=10, description="Switch load-balancing loss weight (0 = off)"
    )
    z_loss_coef: float = Field(0.001, ge=0, le=10, description="Router z-loss weight (0 = off)")
    bias_balancing: bool = Field(
        False, description="Aux-loss-free balancing: a per-expert routing bias (DeepSeek-V3)"
    )
    bias_rate: float = Field(
        0.001, ge=0, le=1, description="Bias step per optimizer step (sign of the overload)"
    )
    router_lr: float = Field(0.004, gt=0, le=10, description="AdamW learning rate of the router")

    @model_validator(mode="after")
    def _check_k(self) -> MoEConfig:
        if self.top_k > self.num_experts:
            raise ValueError(
                f"top_k {self.top_k} is more than num_experts {self.num_experts}; "
                "route to at most every expert"
            )
        return self

    def hidden(self, model_dim: int) -> int:
        """One expert's hidden width (default keeps active MLP params equal to the dense MLP's)."""
        return self.expert_dim or max(8, 4 * model_dim // self.top_k)

    def capacity(self, tokens: int) -> int:
        """Slots per expert for ``tokens`` tokens (dropless: every token fits anywhere)."""
        if self.capacity_factor <= 0:
            return tokens
        slots = math.ceil(self.capacity_factor * tokens * self.top_k / self.num_experts)
        return max(1, min(tokens, slots))
