import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DropReason,
  FailureKind,
  type StreamRolloutsRequest,
  StreamRolloutsResponse,
} from "./gen/gym/v1/rollout";
import { Task } from "./gen/gym/v1/task";
import { drive, type Duplex, run, TASKS_PER_MESSAGE } from "./stream";

/**
 * A small in-memory StreamRollouts server (the Go test's fakeStream): answers open, queues keyed tasks, starts one
 * group per credit (in order, one at a time), stamps its rollouts with the version in force when it starts, drops the
 * keys in `uniform` (returning the credit), and after the half-close sends the summary and ends. A read with nothing
 * to do while the request side is open is a trainer waiting forever: an error.
 */
class FakeStream implements Duplex {
  sent: string[] = [];
  private pending: StreamRolloutsResponse[] = [];
  private queue: string[] = [];
  private credits = 0;
  private version = 0;
  private closed = false;
  private ended = false;
  private delivered = 0;
  private dropped = 0;

  constructor(
    private readonly uniform: Set<string> = new Set(),
    private readonly batches = false, // answer open with acceptsBatches
  ) {}

  write(request: StreamRolloutsRequest): boolean {
    if (this.closed) throw new Error("write after end");
    const m = request.message;
    switch (m?.$case) {
      case "batch": {
        const outer = this.sent;
        this.sent = [];
        m.value.messages.forEach((inner) => this.write(inner));
        this.sent = [...outer, `batch[${this.sent.join(" ")}]`];
        break;
      }
      case "open":
        this.sent.push("open");
        this.version = m.value.policyVersion ?? 0;
        this.pending.push(
          StreamRolloutsResponse.fromPartial({
            message: {
              $case: "opened",
              value: { streamId: "s", policyVersion: m.value.policyVersion, acceptsBatches: this.batches },
            },
          }),
        );
        break;
      case "tasks": {
        const keys = m.value.tasks.map((t) => t.taskKey);
        this.queue.push(...keys);
        this.sent.push(`tasks:${keys.join(",")}`);
        break;
      }
      case "credit":
        this.credits += m.value.groups;
        this.sent.push(`credit:${m.value.groups}`);
        break;
      case "policy":
        this.version = m.value.version;
        this.sent.push(`policy:${m.value.version}`);
        break;
      case "ack":
        this.sent.push(`ack:${m.value.ids.join(",")}`);
        break;
      default:
        throw new Error(`unexpected ${m?.$case}`);
    }
    return true;
  }

  end(): void {
    this.closed = true;
    this.sent.push("close");
  }

  next(): StreamRolloutsResponse | undefined {
    const queued = this.pending.shift();
    if (queued !== undefined) return queued;
    const v = this.version;
    if (this.credits > 0 && this.queue.length > 0) {
      const key = this.queue.shift() as string;
      if (this.uniform.has(key)) {
        this.dropped++;
        return StreamRolloutsResponse.fromPartial({
          message: {
            $case: "dropped",
            value: {
              groupId: `g-${key}`,
              taskKey: key,
              reason: DropReason.DROP_REASON_UNIFORM,
              minPolicyVersion: v,
              maxPolicyVersion: v,
              creditReturned: 1,
              rewards: [1, 1],
            },
          },
        });
      }
      this.credits--;
      this.delivered++;
      const rollouts = [
        { rolloutIndex: 0, reward: 1, minPolicyVersion: v, maxPolicyVersion: v },
        {
          rolloutIndex: 1,
          failureKind: FailureKind.FAILURE_KIND_TASK,
          failure: { code: 3, message: "bad row" },
          minPolicyVersion: v,
          maxPolicyVersion: v,
        },
      ];
      return StreamRolloutsResponse.fromPartial({
        message: { $case: "group", value: { groupId: `g-${key}`, taskKey: key, rollouts } },
      });
    }
    if (!this.closed) throw new Error("fake: the trainer waits with the request side open and nothing to do");
    if (this.ended) return undefined;
    this.ended = true;
    return StreamRolloutsResponse.fromPartial({
      message: {
        $case: "summary",
        value: {
          succeeded: this.delivered,
          failed: this.delivered,
          groupsDelivered: this.delivered,
          groupsDropped: this.dropped,
          metrics: { reward: { count: this.delivered, mean: 1 } },
        },
      },
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamRolloutsResponse> {
    for (let m = this.next(); m !== undefined; m = this.next()) yield m;
  }
}

const tasksOf = (n: number): Task[] => Array.from({ length: n }, (_, i) => Task.fromPartial({ rowJson: `{"i": ${i}}` }));
const config = { agent: "a", numRepeats: 2, view: 0, credits: 1, dropUniformGroups: false };

test("what answers a group goes as one batch when the server takes batches", async () => {
  const fake = new FakeStream(new Set(), true);
  const summary = await drive(fake, tasksOf(3), config, () => undefined);
  assert.equal(
    fake.sent.join(" "),
    "open tasks:t0,t1,t2 credit:1 batch[ack:g-t0 policy:1 credit:1] batch[ack:g-t1 policy:2 credit:1] close",
  );
  assert.equal(summary.groupsDelivered, 3);
});

test("with one credit each step is announced before the next group starts", async () => {
  const fake = new FakeStream();
  let out = "";
  const summary = await drive(fake, tasksOf(3), config, (t) => (out += t));
  assert.equal(
    fake.sent.join(" "),
    "open tasks:t0,t1,t2 credit:1 ack:g-t0 policy:1 credit:1 ack:g-t1 policy:2 credit:1 close",
  );
  assert.equal(summary.groupsDelivered, 3);
  const lines = out.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.event), ["opened", "group", "group", "group", "summary"]);
  for (let step = 1; step <= 3; step++) {
    const v = step - 1; // task t(step-1) started after version step-1 and was delivered before version step
    assert.deepEqual(lines[step], {
      event: "group",
      step,
      group_id: `g-t${v}`,
      task_key: `t${v}`,
      restarts: 0,
      rollouts: [
        { rollout_index: 0, reward: 1, min_policy_version: v, max_policy_version: v },
        {
          rollout_index: 1,
          reward: null,
          min_policy_version: v,
          max_policy_version: v,
          failure: { kind: "FAILURE_KIND_TASK", code: 3, message: "bad row" },
        },
      ],
    });
  }
  assert.match(out, /\{"event":"summary","succeeded":3,"failed":3,"groups_delivered":3,/);
});

test("the stream half-closes when drops settled every task", async () => {
  const fake = new FakeStream(new Set(["t0", "t1"]));
  let out = "";
  const summary = await drive(fake, tasksOf(3), { ...config, dropUniformGroups: true }, (t) => (out += t));
  assert.equal(fake.sent.join(" "), "open tasks:t0,t1,t2 credit:1 ack:g-t2 policy:1 close");
  assert.equal(summary.groupsDropped, 2);
  assert.ok(
    out.includes(
      '{"event":"dropped","group_id":"g-t0","task_key":"t0","reason":"DROP_REASON_UNIFORM","min_policy_version":0,' +
        '"max_policy_version":0,"credit_returned":1,"rewards":[1,1],"message":""}',
    ),
    out,
  );
});

test("tasks go in batches and the half-close follows the last grant", async () => {
  const fake = new FakeStream();
  const n = TASKS_PER_MESSAGE + 1;
  let out = "";
  await drive(fake, tasksOf(n), { ...config, credits: n + 5 }, (t) => (out += t));
  assert.ok(fake.sent[2].startsWith("tasks:t256"));
  assert.deepEqual(fake.sent.slice(3, 5), [`credit:${n}`, "close"]);
  assert.equal(out.split('"event":"group"').length - 1, n);
});

test("bad usage exits 2", async () => {
  for (const argv of [
    ["-agent", "a"],
    ["-agent", "a", "-input", "x.jsonl", "-view", "everything"],
    ["-agent", "a", "-input", "x.jsonl", "-credits", "0"],
    ["-agent", "a", "-input", "x.jsonl", "-drop-uniform-groups=maybe"],
  ]) {
    assert.equal(await run(argv, () => {}, () => {}, {}), 2, argv.join(" "));
  }
});
