/**
 * One handler thread: a worker_thread that runs one task at a time. Killing it (terminate,
 * hard time limit, shutdown) terminates the thread, which stops even a busy loop at once
 * and touches no other task, since no other task runs on it. A dead thread is never reused.
 */
import { Worker } from 'node:worker_threads';
import type { TaskErrorInfo } from '../store/record.js';
import type { FromThread, RunMessage } from './protocol.js';

export type KillReason = 'terminate' | 'time_limit' | 'shutdown';

export type Outcome =
  | { kind: 'returned'; result: string }
  | { kind: 'threw'; error: TaskErrorInfo }
  | { kind: 'killed'; why: KillReason }
  | { kind: 'crashed'; message: string };

const threadModule = new URL(import.meta.url.endsWith('.ts') ? './thread.ts' : './thread.js', import.meta.url).href;
const threadEntry = new URL('./threadEntry.mjs', import.meta.url);

interface Running {
  id: string;
  settle: (o: Outcome) => void;
  onProgress: (json: string) => void;
}

export class HandlerThread {
  private running: Running | undefined;
  private killedWith: KillReason | undefined;
  private exited = false;
  /** When the thread last finished a task (ms), for retiring idle threads. */
  idleSince = Date.now();

  private constructor(private readonly thread: Worker) {
    thread.on('message', (m: FromThread) => this.onMessage(m));
    thread.on('error', (err) => {
      // The thread is going down (an uncaught error in a handler); never reuse it.
      this.exited = true;
      this.finish({ kind: 'crashed', message: err.message });
    });
    thread.on('exit', (code) => {
      this.exited = true;
      this.finish(
        this.killedWith ? { kind: 'killed', why: this.killedWith } : { kind: 'crashed', message: `handler thread exited with code ${code}` },
      );
    });
  }

  static spawn(tasksModule: string): Promise<HandlerThread> {
    const thread = new Worker(threadEntry, { workerData: { tasksModule, threadModule } });
    return new Promise((resolve, reject) => {
      const onMessage = (m: FromThread) => {
        if (m.type === 'ready') {
          thread.off('message', onMessage);
          thread.off('error', reject);
          resolve(new HandlerThread(thread));
        } else if (m.type === 'fatal') {
          void thread.terminate();
          reject(new Error(m.message));
        }
      };
      thread.on('message', onMessage);
      thread.once('error', reject);
    });
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  get alive(): boolean {
    return !this.exited && this.killedWith === undefined;
  }

  run(message: RunMessage, onProgress: (json: string) => void): Promise<Outcome> {
    if (this.running) throw new Error(`handler thread is busy with task ${this.running.id}`);
    return new Promise((settle) => {
      this.running = { id: message.id, settle, onProgress };
      this.thread.postMessage(message);
    });
  }

  /** Fire the running handler's AbortSignal. */
  abort(id: string, reason: string): void {
    if (this.running?.id === id) this.thread.postMessage({ type: 'abort', id, reason });
  }

  /** Stop the thread by force; a running task settles as killed. */
  async kill(why: KillReason): Promise<void> {
    if (this.exited) return;
    this.killedWith ??= why;
    await this.thread.terminate();
  }

  private onMessage(m: FromThread): void {
    const running = this.running;
    if (!running) return;
    if (m.type === 'progress' && m.id === running.id) running.onProgress(m.progress);
    else if (m.type === 'done' && m.id === running.id) {
      this.finish(m.error ? { kind: 'threw', error: m.error } : { kind: 'returned', result: m.result ?? 'null' });
    }
  }

  private finish(outcome: Outcome): void {
    const running = this.running;
    this.running = undefined;
    this.idleSince = Date.now();
    running?.settle(outcome);
  }
}
