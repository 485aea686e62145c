/**
 * An example trainer of RolloutService.StreamRollouts (the Go client's cmd/stream, line for line): it appends the
 * tasks of a JSONL file by key (t0, t1, ...), grants -credits groups, and after each delivered group acks it, announces
 * policy version = step (the number of groups delivered so far) and grants one more credit; it half-closes once every
 * task has had its credit. It writes one JSON object per server message on stdout and exits 1 when the stream fails,
 * 2 on bad usage.
 *
 *   node dist/stream.js -server 127.0.0.1:50051 -agent weather_simple_agent -input tasks.jsonl -num-repeats 4 -credits 2
 */
import { readFileSync } from "node:fs";

import * as grpc from "@grpc/grpc-js";

import { credentials, MAX_MESSAGE_BYTES } from "./collect";
import {
  type DeepPartial,
  DeliveryMode,
  dropReasonToJSON,
  failureKindToJSON,
  RolloutServiceClient,
  RolloutView,
  type StreamRolloutsRequest as Request,
  StreamRolloutsRequest,
  type StreamRolloutsResponse,
  type StreamSummary,
} from "./gen/gym/v1/rollout";
import { type Task } from "./gen/gym/v1/task";
import { errorLine, messages as unbatched, NoSummaryError, parseDuration, PER_MESSAGE, readTasks, UsageError } from "./trainer";

/** How many tasks one StreamTasks message carries. */
export const TASKS_PER_MESSAGE = 256;

export interface StreamConfig {
  agent: string;
  numRepeats: number;
  view: RolloutView;
  /** Groups granted up front (the most groups running or undelivered at once), >= 1. */
  credits: number;
  dropUniformGroups: boolean;
}

/** The key of the i-th task (0-based) of the input. */
export const taskKey = (i: number): string => `t${i}`;

/** One rollout of a delivered group: reward null when it failed, versions null when its items carry none. */
export interface StreamRolloutLine {
  rollout_index: number;
  reward: number | null;
  min_policy_version: number | null;
  max_policy_version: number | null;
  failure?: { kind: string; code: number; message: string };
}

export type StreamLine =
  | { event: "opened"; stream_id: string; resumed: boolean; policy_version: number | null }
  | {
      event: "group";
      step: number; // the 1-based delivery number: the version the trainer announces right after it
      group_id: string;
      task_key: string;
      restarts: number;
      rollouts: StreamRolloutLine[];
    }
  | {
      event: "dropped";
      group_id: string;
      task_key: string;
      reason: string;
      min_policy_version: number | null;
      max_policy_version: number | null;
      credit_returned: number;
      rewards: number[];
      message: string;
    }
  | {
      event: "heartbeat";
      credits_available: number;
      groups_running: number;
      queued_tasks: number;
      policy_version: number | null;
      rollouts_running: number;
      unacked: number;
    }
  | {
      event: "summary";
      succeeded: number;
      failed: number;
      groups_delivered: number;
      groups_dropped: number;
      groups_restarted: number;
      tasks_not_started: number;
      peak_groups_running: number;
      mean_reward: number | null;
      duration_seconds: number;
    }
  | { event: "rejected"; message_index: number; code: number; status: string; message: string };

/** The output line of one server message, or undefined for an unknown one or a single rollout (never asked for). */
export function streamLine(response: StreamRolloutsResponse, step: number): StreamLine | undefined {
  const m = response.message;
  switch (m?.$case) {
    case "opened":
      return {
        event: "opened",
        stream_id: m.value.streamId,
        resumed: m.value.resumed,
        policy_version: m.value.policyVersion ?? null,
      };
    case "group":
      return {
        event: "group",
        step,
        group_id: m.value.groupId,
        task_key: m.value.taskKey,
        restarts: m.value.restarts,
        rollouts: m.value.rollouts.map((r) => {
          const line: StreamRolloutLine = {
            rollout_index: r.rolloutIndex,
            reward: r.reward ?? null,
            min_policy_version: r.minPolicyVersion ?? null,
            max_policy_version: r.maxPolicyVersion ?? null,
          };
          if (r.failure !== undefined) {
            line.failure = { kind: failureKindToJSON(r.failureKind), code: r.failure.code, message: r.failure.message };
          }
          return line;
        }),
      };
    case "dropped":
      return {
        event: "dropped",
        group_id: m.value.groupId,
        task_key: m.value.taskKey,
        reason: dropReasonToJSON(m.value.reason),
        min_policy_version: m.value.minPolicyVersion ?? null,
        max_policy_version: m.value.maxPolicyVersion ?? null,
        credit_returned: m.value.creditReturned,
        rewards: m.value.rewards,
        message: m.value.message,
      };
    case "heartbeat":
      return {
        event: "heartbeat",
        credits_available: m.value.creditsAvailable,
        groups_running: m.value.groupsRunning,
        queued_tasks: m.value.queuedTasks,
        policy_version: m.value.policyVersion ?? null,
        rollouts_running: m.value.rolloutsRunning,
        unacked: m.value.unacked,
      };
    case "summary": {
      const s = m.value;
      const reward = s.metrics["reward"];
      return {
        event: "summary",
        succeeded: s.succeeded,
        failed: s.failed,
        groups_delivered: s.groupsDelivered,
        groups_dropped: s.groupsDropped,
        groups_restarted: s.groupsRestarted,
        tasks_not_started: s.tasksNotStarted,
        peak_groups_running: s.peakGroupsRunning,
        mean_reward: reward !== undefined && reward.count > 0 ? reward.mean : null,
        duration_seconds: s.durationSeconds,
      };
    }
    case "error": {
      const code = m.value.status?.code ?? grpc.status.UNKNOWN;
      return {
        event: "rejected",
        message_index: m.value.messageIndex,
        code,
        status: grpc.status[code] ?? `CODE_${code}`,
        message: m.value.status?.message ?? "",
      };
    }
    default:
      return undefined;
  }
}

/** The trainer side of one StreamRollouts call; grpc-js's ClientDuplexStream is one. */
export interface Duplex extends AsyncIterable<StreamRolloutsResponse> {
  write(message: Request): unknown;
  end(): unknown;
}

/**
 * Runs the trainer loop over a call until the server ends it, writing one JSON line per server message. Resolves to
 * the summary; rejects with the stream's own error, or a NoSummaryError when the stream closed early.
 */
export async function drive(
  call: Duplex,
  tasks: Task[],
  c: StreamConfig,
  write: (text: string) => void,
): Promise<StreamSummary> {
  if (!(c.credits >= 1)) throw new Error("credits must be at least 1");
  const send = (message: DeepPartial<Request>["message"]): void => {
    call.write(StreamRolloutsRequest.fromPartial({ message } as DeepPartial<Request>));
  };
  send({
    $case: "open",
    value: {
      agent: c.agent,
      numRepeats: c.numRepeats,
      view: c.view,
      delivery: DeliveryMode.DELIVERY_MODE_GROUP,
      dropUniformGroups: c.dropUniformGroups,
      policyVersion: 0,
      maxMessagesPerBatch: PER_MESSAGE,
    },
  });
  const messages = unbatched(call)[Symbol.asyncIterator]();
  const first = await messages.next();
  if (first.done) throw new NoSummaryError();
  if (first.value.message?.$case !== "opened") {
    throw new Error(`the server answered open with ${first.value.message?.$case ?? "nothing"}`);
  }
  write(JSON.stringify(streamLine(first.value, 0)) + "\n");
  for (let start = 0; start < tasks.length; start += TASKS_PER_MESSAGE) {
    const batch = tasks.slice(start, start + TASKS_PER_MESSAGE).map((task, i) => ({ taskKey: taskKey(start + i), task }));
    send({ $case: "tasks", value: { tasks: batch } });
  }
  // What answers a group (its ack, the new version, a credit) goes as one message when the server takes batches
  // (`opened.acceptsBatches`: it applies them exactly as if sent one by one).
  const together = first.value.message.value.acceptsBatches;
  const sendAll = (all: DeepPartial<Request>["message"][]): void => {
    if (together && all.length > 1) {
      send({ $case: "batch", value: { messages: all.map((message) => ({ message })) } });
    } else {
      all.forEach(send);
    }
  };
  let granted = 0;
  let step = 0;
  let settled = 0;
  let closed = false;
  const credit = (n: number): DeepPartial<Request>["message"][] => {
    n = Math.min(n, tasks.length - granted);
    if (n <= 0) return [];
    granted += n;
    return [{ $case: "credit", value: { groups: n } }];
  };
  // Half-close once every task has had its credit (the server then finishes what it admitted), or once every task is
  // settled (delivered or dropped: drops return credits, so fewer grants may have been needed).
  const closeIfDone = (): void => {
    if (closed || (granted < tasks.length && settled < tasks.length)) return;
    closed = true;
    call.end();
  };
  sendAll(credit(c.credits));
  closeIfDone();
  let summary: StreamSummary | undefined;
  for (let next = await messages.next(); !next.done; next = await messages.next()) {
    const m = next.value.message;
    if (m?.$case === "group") step++;
    const line = streamLine(next.value, step);
    if (line === undefined) continue;
    write(JSON.stringify(line) + "\n");
    if (m?.$case === "group") {
      settled++;
      if (!closed) {
        // After training on the group: ack it, announce the new version, grant a credit (none once all settled).
        sendAll([
          { $case: "ack", value: { ids: [m.value.groupId] } },
          { $case: "policy", value: { version: step } },
          ...credit(settled < tasks.length ? 1 : 0),
        ]);
      }
    } else if (m?.$case === "dropped") {
      settled++;
    } else if (m?.$case === "summary") {
      summary = m.value;
    }
    closeIfDone();
  }
  if (summary === undefined) throw new NoSummaryError();
  return summary;
}

export interface StreamOptions extends StreamConfig {
  server: string;
  input: string;
  deadlineMs: number;
  token: string;
  tlsCa: string;
  tlsCert: string;
  tlsKey: string;
}

const VIEWS: Record<string, RolloutView> = {
  "": RolloutView.ROLLOUT_VIEW_UNSPECIFIED,
  basic: RolloutView.ROLLOUT_VIEW_BASIC,
  full: RolloutView.ROLLOUT_VIEW_FULL,
  training: RolloutView.ROLLOUT_VIEW_TRAINING,
};
const VALUE_FLAGS = ["server", "agent", "input", "num-repeats", "credits", "view", "deadline", "token", "tls-ca", "tls-cert", "tls-key"];
const BOOL_FLAGS = ["drop-uniform-groups"];

/** The Go command's flags, spelled as Go's flag package takes them (-name value, --name value, -name=value, -bool). */
export function parseStreamFlags(argv: string[], env: Record<string, string | undefined> = process.env): StreamOptions {
  const v: Record<string, string> = { server: "127.0.0.1:50051", "num-repeats": "1", credits: "2", view: "", deadline: "0" };
  v.token = env.GYM_GRPC_TOKEN ?? "";
  const bools: Record<string, boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--?([a-z-]+)(?:=(.*))?$/s.exec(argv[i]);
    if (m !== null && BOOL_FLAGS.includes(m[1])) {
      if (m[2] !== undefined && m[2] !== "true" && m[2] !== "false") throw new UsageError(`-${m[1]}: not a boolean`);
      bools[m[1]] = m[2] !== "false";
      continue;
    }
    if (m === null || !VALUE_FLAGS.includes(m[1])) throw new UsageError(`unknown argument ${argv[i]}`);
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
  if (!(v.view in VIEWS)) throw new UsageError("-view is basic, full or training");
  if (int("credits") < 1) throw new UsageError("-credits must be at least 1");
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
    credits: int("credits"),
    view: VIEWS[v.view],
    dropUniformGroups: bools["drop-uniform-groups"] ?? false,
    deadlineMs,
    token: v.token,
    tlsCa: v["tls-ca"] ?? "",
    tlsCert: v["tls-cert"] ?? "",
    tlsKey: v["tls-key"] ?? "",
  };
}

export async function stream(o: StreamOptions, write: (text: string) => void): Promise<void> {
  const tasks = readTasks(readFileSync(o.input, "utf8"));
  const client = new RolloutServiceClient(o.server, credentials(o), {
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  });
  const metadata = new grpc.Metadata();
  if (o.token) metadata.set("authorization", `Bearer ${o.token}`);
  const call = client.streamRollouts(metadata, o.deadlineMs > 0 ? { deadline: Date.now() + o.deadlineMs } : {});
  const interrupt = (): void => call.cancel();
  process.once("SIGINT", interrupt);
  try {
    await drive(call, tasks, o, write);
  } catch (err) {
    write(JSON.stringify(errorLine(err)) + "\n");
    throw err;
  } finally {
    process.removeListener("SIGINT", interrupt);
    call.cancel(); // a no-op once the call ended; ends it if drive returned early
    client.close();
  }
}

/** Runs the command; resolves to the exit code. */
export async function run(
  argv: string[],
  stdout: (text: string) => void,
  stderr: (text: string) => void,
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  let options: StreamOptions;
  try {
    options = parseStreamFlags(argv, env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    stderr(`stream: ${err.message}\nflags: -server host:port -agent NAME -input tasks.jsonl [-num-repeats N] ` +
      `[-credits N] [-view basic|full|training] [-drop-uniform-groups] [-deadline 10m] [-token T | $GYM_GRPC_TOKEN] ` +
      `[-tls-ca ca.pem] [-tls-cert c.pem -tls-key k.pem]\n`);
    return 2;
  }
  try {
    await stream(options, stdout);
    return 0;
  } catch (err) {
    stderr(`stream: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

if (require.main === module) {
  void run(
    process.argv.slice(2),
    (text) => process.stdout.write(text),
    (text) => process.stderr.write(text),
  ).then((code) => {
    process.exitCode = code; // not process.exit(): stdout is a pipe and may still be draining
  });
}
