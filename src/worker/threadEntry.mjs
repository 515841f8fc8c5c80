// Entry of a handler thread. In a TypeScript checkout the thread registers tsx first
// (worker threads do not inherit the main thread's module hooks), then loads thread.ts.
import { workerData } from 'node:worker_threads';

const { threadModule } = workerData;
if (threadModule.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(threadModule);
