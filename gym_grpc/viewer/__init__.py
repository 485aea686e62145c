"""The rollout viewer: `gym-grpc view` (a self-contained HTML page, or served live)."""
