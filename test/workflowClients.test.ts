/**
 * Workflows from every client: the TS builders (bound to a client, or built apart and
 * started by one), the CLI (`taskwire workflow '<json>' --wait`), and curl's JSON (Connect
 * over HTTP/1.1, the same JSON grpcurl sends).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chain, chord, group, sig, signature, type TaskwireClient } from '../src/client/index.js';
import { runTaskwire } from './helpers/processes.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let tw: TaskwireClient;

beforeAll(async () => {
  stack = await startStack();
  tw = stack.client;
});
afterAll(async () => {
  await stack?.stop();
});

const CHAIN = '{"chain":{"steps":[{"task":{"name":"add","args":[2,2]}},{"task":{"name":"add","args":[4]}},{"task":{"name":"add","args":[8]}}]}}';

describe('workflows from every client', () => {
  it('builders made without a client are started by one', async () => {
    const flow = chord(group(sig('add', 1, 1), sig('add', 2, 2), signature('add', { args: [3, 3] })), sig('tsum'));
    expect(await tw.wait(await tw.startWorkflow(flow))).toBe(12);
    await expect(chain(sig('add', 1, 1)).start()).rejects.toThrow(/built without a client/);
  });

  it('the CLI starts a workflow from its JSON and --wait follows it to its result', async () => {
    const env = { TASKWIRE_SERVER: stack.baseUrl };
    const run = await runTaskwire(['workflow', CHAIN, '--wait'], env);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines.at(-1)).toMatch(/ workflow {2}SUCCESS .*result 16/);

    const id = lines.at(-1)!.split(' ')[0]!;
    const status = await runTaskwire(['status', id, '--json'], env);
    const record = JSON.parse(status.stdout) as { children: string[]; result: number };
    expect(record.result).toBe(16);
    expect(record.children).toHaveLength(3);
    const child = await runTaskwire(['status', record.children[0]!], env);
    expect(child.stdout).toContain(`of workflow ${id}`);

    const failed = await runTaskwire(['workflow', '{"group":{"steps":[{"task":{"name":"fail","args":["no"]}}]}}', '--wait'], env);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/FAILURE .*Error: no \(task /);

    const bad = await runTaskwire(['workflow', '{"chain":{"steps":[{"task":{"name":"nope"}}]}}'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('InvalidArgument: root.chain.steps[0].task.name:');

    const notJson = await runTaskwire(['workflow', '{chain'], env);
    expect(notJson.code).not.toBe(0);
    expect(notJson.stderr).toMatch(/must be a Step in JSON/);
  });

  it("curl's JSON: StartWorkflow, then GetStatus of the workflow with its children", async () => {
    const call = async (method: string, body: unknown) => {
      const res = await fetch(`${stack.baseUrl}/taskwire.v1.TaskService/${method}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as any };
    };
    const started = await call('StartWorkflow', { root: JSON.parse(CHAIN) });
    expect(started.status).toBe(200);
    const id = started.json.task.id as string;
    expect(started.json.task.name).toBe('workflow');
    expect(await tw.wait(id)).toBe(16);
    const status = await call('GetStatus', { id });
    expect(status.json.task.state).toBe('TASK_STATE_SUCCESS');
    expect(status.json.task.result).toBe(16);
    expect(status.json.task.children).toHaveLength(3);
    expect(status.json.task.progress).toEqual({ done: 3, total: 3 });
    const child = await call('GetStatus', { id: status.json.task.children[0] });
    expect(child.json.task.parentId).toBe(id);
    // The API counts the workflow it accepted, once.
    const metrics = await (await fetch(`${stack.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^taskwire_tasks_started_total\{task="workflow",queue="default"\} [1-9]/m);
  });
});
