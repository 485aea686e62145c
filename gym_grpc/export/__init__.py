"""Rollouts -> training data: `gym-grpc export sft|dpo|tokens` (see docs/viewer.md)."""
