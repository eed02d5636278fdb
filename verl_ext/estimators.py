"""`treerpo` and `treepo`, registered in verl's advantage-estimator registry.

verl calls `fn(token_level_rewards, response_mask, index=uids, config=config.algorithm)`. The
uids carry each leaf's tree topology (`treerpo.tree.topology`); the options come from the
run config's `tree.advantage` group (`treerpo.tree.options.AdvantageOptions`), which we reach
from the `algorithm` node verl passes: in verl's trainers it is a node of the full OmegaConf
config.
`treepo` also reads `tree.rollout.credit`, which decides the value of a shared segment.

A batch without real rows (none at all, or only verl's padding rows) gets all-zero advantages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from verl.trainer.ppo.core_algos import register_adv_est
from verl.utils.torch_functional import masked_whiten

from treerpo.tree import node_table
from treerpo.advantages.segment import treepo_node_advantages, treepo_row_advantages
from treerpo.advantages.step import treerpo_token_advantages
from verl_ext.tree_config import advantage_options, rollout_options


def _check_rewards(token_level_rewards: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    scores = token_level_rewards.sum(dim=-1)
    bad = ~torch.isfinite(scores)
    if bad.any():
        r = int(bad.nonzero()[0, 0])
        raise ValueError(f"non-finite reward {scores[r].item()} for uid {index[r]!r}")
    return scores


def _whiten(values: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """verl's `masked_whiten` of `values`, each standing for `tokens` tokens; zeros under 2 tokens."""
    if tokens.sum() >= 2:  # verl's masked_var needs two tokens
        return masked_whiten(values, tokens)
    return torch.zeros_like(values)


@register_adv_est("treerpo")
def compute_treerpo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    config: Any = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TreeRPO step-level advantages (treerpo.advantages.step); returns (advantages, returns)."""
    opts = advantage_options(config)
    with torch.no_grad():
        _check_rewards(token_level_rewards, index)
        table = node_table.build(index, response_mask)
        adv = treerpo_token_advantages(table, token_level_rewards, response_mask, opts)
    return adv, adv


@register_adv_est("treepo")
def compute_treepo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    config: Any = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TreePO segment advantages (treerpo.advantages.segment), whitened by verl's masked_whiten.

    `credit=every_row`: every token of row i carries the same A_i, so the token-level whitening
    statistics equal the row-level ones weighted by each row's token count. verl's masked_*
    functions take numeric masks, so we hand `masked_whiten` (B,) values with (B,) token counts:
    the same mean and (Bessel-corrected) variance as REINFORCE++'s (B, T) call, without
    2 x 10^7-element passes. `credit=once`: every token of node n carries A(n), so the same holds
    with (N,) node values and each node's trained-token count.
    """
    opts = advantage_options(config)
    credit = rollout_options(config).credit
    with torch.no_grad():
        scores = _check_rewards(token_level_rewards, index)
        table = node_table.build(index, response_mask)
        row_adv = treepo_row_advantages(table, scores, opts)
        if credit == "once":
            node_adv = _whiten(treepo_node_advantages(table, row_adv), table.node_tokens(response_mask))
            adv = table.scatter_to_tokens(node_adv.to(token_level_rewards.dtype), response_mask.shape[1])
            adv = adv * response_mask
        else:
            row_adv = _whiten(row_adv, response_mask.sum(dim=-1).to(torch.float64))
            adv = row_adv.to(token_level_rewards.dtype)[:, None] * response_mask
    return adv, adv
