"""The trainer side of gym-grpc: a policy served from a training process, and TRL GRPO driven by rollout streams.

Apart from `gym_grpc` (whose server never imports torch); it uses only gym_grpc's client and protocol API. Install
with `make train-venv` (the `train` extra, in `.venv-train`). Modules:

- `policy`: the trainer's live transformers model as a batched sampler (log-probs of the sampled distribution).
- `render`: chat template rendering (token-exact across turns), tool-call parsing, the Response of a generation.
- `batching`: requests that arrive together are generated together, in one generation thread.
- `service`: `gym.v1.ModelService` around the policy, with the policy version on every answer.
- `trl_rollouts`: TRL's `rollout_func` over a `StreamRollouts` stream; `rows`: a training view as a TRL row.
- `demo`: `make train`, GRPO on SmolLM2-135M with an instruction-following environment.
"""
