/** The public API for people who write tasks and run taskwire from code. */
export { createRegistry, defineQueue, defineSchedule, defineTask, TaskRegistry } from './tasks/define.js';
export type {
  QueueDefinition,
  QueueOptions,
  ScheduleDefinition,
  ScheduleOptions,
  ScheduleWhen,
  TaskContext,
  TaskDefinition,
  TaskOptions,
} from './tasks/define.js';
export type { JsonObject, JsonValue } from './json.js';
export { loadConfig, type Config } from './config.js';
export { startApiServer } from './server/index.js';
export { Worker } from './worker/runtime.js';
