/**
 * The periodic-task duty of a taskwire process: its own Redis connection, the ticker, and
 * (in a worker) the upsert of the schedules its tasks module declares. Loads no API code.
 */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { connectReady } from '../redis.js';
import { loadRegistry, type ScheduleDefinition } from '../tasks/define.js';
import { ScheduleStore, type ScheduleSpec } from './scheduleStore.js';
import { Ticker } from './ticker.js';

export interface Beat {
  stop(): Promise<void>;
}

type BeatConfig = Pick<Config, 'redisUrl' | 'tasksModule' | 'resultTtlMs' | 'eventLogCap' | 'maxPayloadBytes'>;

/** `declare`: create or update the schedules the tasks module declares (workers). */
export async function startBeat(config: BeatConfig, log: Logger, options: { declare: boolean }): Promise<Beat> {
  const registry = await loadRegistry(config.tasksModule);
  const redis = await connectReady(config.redisUrl!, 'beat');
  try {
    // The task store (and its exclusive-key lock) loads with the first schedule to fire.
    const store = new ScheduleStore(redis, async () => new (await import('../store/taskStore.js')).TaskStore(redis, registry, config), config);
    if (options.declare) {
      for (const def of registry.schedules()) {
        const { outcome } = await store.put(declaredSpec(def), { replace: true, keepPaused: true });
        log.info(`schedule ${def.id} from the tasks module: ${outcome}`, { schedule_id: def.id });
      }
    }
    const ticker = new Ticker(store, log.child('beat'));
    ticker.start();
    return {
      async stop() {
        await ticker.stop();
        await redis.quit().catch(() => redis.disconnect());
      },
    };
  } catch (err) {
    redis.disconnect();
    throw new Error(`the schedules of the tasks module cannot be stored: ${(err as Error).message}`);
  }
}

export function declaredSpec(def: ScheduleDefinition): ScheduleSpec {
  const o = def.options;
  return {
    id: def.id,
    ...('everyMs' in def.when ? { everyMs: def.when.everyMs } : { cron: def.when.cron, timezone: def.when.timezone }),
    overlap: o.overlap,
    task: { name: def.task, args: o.args, kwargs: o.kwargs, queue: o.queue, timeLimitMs: o.timeLimitMs, maxAttempts: o.maxAttempts },
  };
}
