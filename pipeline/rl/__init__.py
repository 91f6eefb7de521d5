"""Two-stage RL with C3PO (Ring-lite): the loss, the token budget, the step loop.

- :mod:`pipeline.rl.c3po`: the policy loss, normaliser ``budget`` | ``token_mean`` | ``seq_mean``;
- :mod:`pipeline.rl.budget`: group advantages, walk orders, the token-budget selector;
- :mod:`pipeline.rl.router_losses`: MoE load-balance and router z-loss;
- :mod:`pipeline.rl.trainer`: the RL step and loop; :mod:`pipeline.rl.stage`: the stages' main.
"""
