/**
 * The event handling of the example trainer (collect.ts): read NeMo Gym JSONL task rows, and turn each
 * CollectRolloutsResponse event into one JSON line, so a test (or a script) can check the stream without parsing free
 * text. The lines are the same, key for key, as those of the Go client (clients/go/trainer).
 */
import { status as Status } from "@grpc/grpc-js";

import {
  type CollectionSummary,
  type CollectRolloutsResponse,
  failureKindToJSON,
  type StreamRolloutsResponse,
} from "./gen/gym/v1/rollout";
import { Task } from "./gen/gym/v1/task";

export interface StartedLine {
  event: "started";
  collection_id: string;
  total_tasks: number;
  total_rollouts: number;
  num_repeats: number;
}

/** A finished rollout. reward is null when the rollout failed: a failure is never a fake 0. */
export interface RolloutLine {
  event: "rollout";
  task_index: number;
  rollout_index: number;
  group_id: string;
  rollout_id: string;
  reward: number | null;
  failure?: { kind: string; code: number; message: string };
}

/** All repeats of a task are done. mean_reward is null when none succeeded. */
export interface GroupLine {
  event: "group_complete";
  task_index: number;
  group_id: string;
  mean_reward: number | null;
  succeeded: number;
  failed: number;
}

export interface HeartbeatLine {
  event: "heartbeat";
  completed: number;
  in_flight: number;
}

/** The last event. mean_reward is the "reward" metric's mean, null when none succeeded. */
export interface SummaryLine {
  event: "summary";
  succeeded: number;
  failed: number;
  skipped: number;
  mean_reward: number | null;
  duration_seconds: number;
}

/** The stream failed (the process then exits non-zero). */
export interface ErrorLine {
  event: "error";
  code: number;
  status: string;
  message: string;
}

export type Line = StartedLine | RolloutLine | GroupLine | HeartbeatLine | SummaryLine;

/** The output line of one event, or undefined for an empty or unknown event (a newer contract): those are skipped. */
export function lineFor(response: CollectRolloutsResponse): Line | undefined {
  const ev = response.event;
  switch (ev?.$case) {
    case "started":
      return {
        event: "started",
        collection_id: ev.value.collectionId,
        total_tasks: ev.value.totalTasks,
        total_rollouts: ev.value.totalRollouts,
        num_repeats: ev.value.numRepeats,
      };
    case "rollout": {
      const r = ev.value;
      const line: RolloutLine = {
        event: "rollout",
        task_index: r.taskIndex,
        rollout_index: r.rolloutIndex,
        group_id: r.groupId,
        rollout_id: r.rolloutId,
        reward: r.reward ?? null,
      };
      if (r.failure !== undefined) {
        line.failure = { kind: failureKindToJSON(r.failureKind), code: r.failure.code, message: r.failure.message };
      }
      return line;
    }
    case "groupComplete":
      return {
        event: "group_complete",
        task_index: ev.value.taskIndex,
        group_id: ev.value.groupId,
        mean_reward: ev.value.meanReward ?? null,
        succeeded: ev.value.succeeded,
        failed: ev.value.failed,
      };
    case "heartbeat":
      return { event: "heartbeat", completed: ev.value.completed, in_flight: ev.value.inFlight };
    case "summary": {
      const reward = ev.value.metrics["reward"];
      return {
        event: "summary",
        succeeded: ev.value.succeeded,
        failed: ev.value.failed,
        skipped: ev.value.skipped,
        mean_reward: reward !== undefined && reward.count > 0 ? reward.mean : null,
        duration_seconds: ev.value.durationSeconds,
      };
    }
    default:
      return undefined;
  }
}

export class NoSummaryError extends Error {
  constructor() {
    super("stream ended without a summary event");
  }
}

/**
 * Reads every event, writing one JSON line per event with `write`. Resolves to the summary; rejects with the stream's
 * own error, or a NoSummaryError when the stream closed early.
 */
/**
 * What the example trainers ask the server for: CollectRollouts' maxEventsPerMessage and StreamRollouts'
 * open.maxMessagesPerBatch. Messages that are ready at the same moment then travel together in one `batch` message
 * (gRPC's cost is per message); `events` and `messages` unpack them.
 */
export const PER_MESSAGE = 64;

/** The events of a CollectRollouts stream one at a time: a `batch` message's events in order, any other as itself. */
export async function* events(stream: AsyncIterable<CollectRolloutsResponse>): AsyncGenerator<CollectRolloutsResponse> {
  for await (const m of stream) {
    if (m.event?.$case === "batch") yield* m.event.value.events;
    else yield m;
  }
}

/** The messages of a StreamRollouts call one at a time, the same way. */
export async function* messages(stream: AsyncIterable<StreamRolloutsResponse>): AsyncGenerator<StreamRolloutsResponse> {
  for await (const m of stream) {
    if (m.message?.$case === "batch") yield* m.message.value.messages;
    else yield m;
  }
}

export async function consume(
  events: AsyncIterable<CollectRolloutsResponse>,
  write: (text: string) => void,
): Promise<CollectionSummary> {
  let summary: CollectionSummary | undefined;
  for await (const response of events) {
    const line = lineFor(response);
    if (line === undefined) continue;
    write(JSON.stringify(line) + "\n");
    if (response.event?.$case === "summary") summary = response.event.value;
  }
  if (summary === undefined) throw new NoSummaryError();
  return summary;
}

/** Describes a stream error; errors without a gRPC status code are UNKNOWN. */
export function errorLine(err: unknown): ErrorLine {
  const e = err as { code?: unknown; details?: unknown; message?: unknown };
  const code = typeof e.code === "number" ? e.code : Status.UNKNOWN;
  const message = typeof e.details === "string" ? e.details : String(e.message ?? err);
  return { event: "error", code, status: Status[code] ?? `CODE_${code}`, message };
}

/** NeMo Gym JSONL rows: each non-blank line becomes Task{rowJson: line}, unchanged (the server decodes it). */
export function readTasks(text: string): Task[] {
  const tasks: Task[] = [];
  text.split("\n").forEach((raw, i) => {
    const row = raw.trim();
    if (row === "") return;
    let value: unknown;
    try {
      value = JSON.parse(row);
    } catch {
      value = undefined;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new Error(`line ${i + 1}: not a JSON object`);
    }
    tasks.push(Task.fromPartial({ rowJson: row }));
  });
  return tasks;
}

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go-style duration ("90s", "10m", "1h30m", "250ms", "0") into milliseconds, as the Go client's -deadline. */
export function parseDuration(text: string): number {
  if (text === "0") return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    total += Number(m[1]) * UNIT_MS[m[2]];
    end = re.lastIndex;
  }
  if (text === "" || end !== text.length) throw new Error(`invalid duration ${JSON.stringify(text)}`);
  return total;
}

export interface Options {
  server: string;
  agent: string;
  input: string;
  numRepeats: number;
  maxInFlight: number;
  deadlineMs: number;
  token: string;
  tlsCa: string;
  tlsCert: string;
  tlsKey: string;
}

export class UsageError extends Error {}

const FLAGS = ["server", "agent", "input", "num-repeats", "max-in-flight", "deadline", "token", "tls-ca", "tls-cert", "tls-key"];

/** The Go client's flags, spelled as Go's flag package takes them: -name value, --name value, -name=value. */
export function parseFlags(argv: string[], env: Record<string, string | undefined> = process.env): Options {
  const v: Record<string, string> = { server: "127.0.0.1:50051", "num-repeats": "1", "max-in-flight": "0", deadline: "0" };
  v.token = env.GYM_GRPC_TOKEN ?? "";
  for (let i = 0; i < argv.length; i++) {
    const m = /^--?([a-z-]+)(?:=(.*))?$/s.exec(argv[i]);
    if (m === null || !FLAGS.includes(m[1])) throw new UsageError(`unknown argument ${argv[i]}`);
    let value = m[2];
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: -${m[1]}`);
      value = argv[++i];
    }
    v[m[1]] = value;
  }
  const int = (name: string): number => {
    if (!/^\d+$/.test(v[name])) throw new UsageError(`-${name}: not a non-negative integer: ${v[name]}`);
    return Number(v[name]);
  };
  if (!v.agent || !v.input) throw new UsageError("-agent and -input are required");
  if (Boolean(v["tls-cert"]) !== Boolean(v["tls-key"])) throw new UsageError("-tls-cert and -tls-key go together");
  let deadlineMs: number;
  try {
    deadlineMs = parseDuration(v.deadline);
  } catch (e) {
    throw new UsageError(`-deadline: ${(e as Error).message}`);
  }
  return {
    server: v.server,
    agent: v.agent,
    input: v.input,
    numRepeats: int("num-repeats"),
    maxInFlight: int("max-in-flight"),
    deadlineMs,
    token: v.token,
    tlsCa: v["tls-ca"] ?? "",
    tlsCert: v["tls-cert"] ?? "",
    tlsKey: v["tls-key"] ?? "",
  };
}
