// Entry of a handler thread. Run from TypeScript, the thread registers tsx first (worker
// threads do not inherit the main thread's module hooks), then loads thread.ts. Built
// (npm run build), it loads dist's thread.js directly: no compiler in the thread, about
// 10 MB and 100 ms to start instead of 30 MB and 800 ms. (A tasks module written in
// TypeScript still gets tsx: loadRegistry registers it.)
import { workerData } from 'node:worker_threads';

const { threadModule } = workerData;
if (threadModule.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(threadModule);
