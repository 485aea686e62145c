"""A support desk where the customer's goal is known only to a simulated user (see `environment`)."""

from gym_grpc.environments.support_desk.environment import SupportDeskEnvironment

__all__ = ["SupportDeskEnvironment"]
