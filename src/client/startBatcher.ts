/**
 * Start calls made together travel together. The `start()` calls a program makes within one
 * turn of the event loop (a loop of starts, or many callers each awaiting their own) go to
 * the server as one StartMany, in the order they were made, and each caller gets its own
 * task or its own error — the same code, message and details a Start alone would have given.
 * A lone call goes as a plain Start. One RPC for many tasks is what makes a client fast:
 * an RPC costs far more than the task it starts.
 */
import { Code, ConnectError, type Client } from '@connectrpc/connect';
import type { Task } from '../../gen/taskwire/v1/task_pb.js';
import type { StartRequest, StartResult, TaskService } from '../../gen/taskwire/v1/task_service_pb.js';

interface Pending {
  request: StartRequest;
  resolve: (task: Task) => void;
  reject: (err: unknown) => void;
}

/** Requests per StartMany (the server takes up to 1000), and a bound on its size, well under
 * the server's default request limit (1 MiB + 64 KiB). */
const MAX_REQUESTS = 500;
const MAX_BYTES = 256 * 1024;
/** A request estimated above this goes alone. */
const ALONE_BYTES = 64 * 1024;

export class StartBatcher {
  private pending: Pending[] = [];
  private bytes = 0;
  private scheduled = false;
  private supported = true;

  constructor(private readonly rpc: Client<typeof TaskService>) {}

  /** `estimatedBytes`: about how large the request is encoded (its args and kwargs). */
  start(request: StartRequest, estimatedBytes: number): Promise<Task> {
    if (!this.supported || estimatedBytes > ALONE_BYTES) return this.startAlone(request);
    return new Promise((resolve, reject) => {
      if (this.pending.length >= MAX_REQUESTS || this.bytes + estimatedBytes > MAX_BYTES) this.flush();
      this.pending.push({ request, resolve, reject });
      this.bytes += estimatedBytes;
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private async startAlone(request: StartRequest): Promise<Task> {
    return (await this.rpc.start(request)).task!;
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = [];
    this.bytes = 0;
    if (batch.length === 1) {
      const [one] = batch as [Pending];
      this.startAlone(one.request).then(one.resolve, one.reject);
    } else if (batch.length > 1) {
      this.startMany(batch).catch((err: unknown) => {
        for (const p of batch) p.reject(err);
      });
    }
  }

  private async startMany(batch: Pending[]): Promise<void> {
    let results: StartResult[];
    try {
      results = (await this.rpc.startMany({ requests: batch.map((p) => p.request) })).results;
    } catch (err) {
      if (ConnectError.from(err).code === Code.Unimplemented) {
        // A server without StartMany: every start goes alone from now on.
        this.supported = false;
        for (const p of batch) this.startAlone(p.request).then(p.resolve, p.reject);
        return;
      }
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const outcome = results[i]?.outcome;
      if (outcome?.case === 'task') p.resolve(outcome.value);
      else if (outcome?.case === 'error') p.reject(asConnectError(outcome.value));
      else p.reject(new ConnectError(`the server sent no result for start ${i + 1} of ${batch.length}`, Code.Internal));
    });
  }
}

function asConnectError(e: { code: number; message: string; details: { typeUrl: string; value: Uint8Array }[] }): ConnectError {
  const err = new ConnectError(e.message, e.code in Code ? (e.code as Code) : Code.Unknown);
  // As Connect stores the details of an error it reads off the wire.
  for (const d of e.details) err.details.push({ type: d.typeUrl.slice(d.typeUrl.lastIndexOf('/') + 1), value: d.value });
  return err;
}
