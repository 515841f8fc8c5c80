// Entry of a handler thread. Run from TypeScript, the thread registers tsx first (worker
// threads do not inherit the main thread's module hooks), then loads thread.ts. Built
// (npm run build), it loads dist's thread.js directly: no compiler in the thread, so it
// starts faster and smaller (docs/performance.md). (A tasks module written in TypeScript
// still gets tsx: loadRegistry registers it.)
import { workerData } from 'node:worker_threads';

const { threadModule } = workerData;
if (threadModule.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(threadModule);
