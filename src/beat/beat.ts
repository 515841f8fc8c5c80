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

/** How long a stop waits for the ticker's pass in progress before dropping its connection. */
const STOP_WAIT_MS = 1000;

export interface Beat {
  stop(): Promise<void>;
}

type BeatConfig = Pick<Config, 'redisUrl' | 'redisCluster' | 'tasksModule' | 'resultTtlMs' | 'eventLogCap' | 'maxPayloadBytes'> &
  Partial<Pick<Config, 'queuePartitions'>>;

/** `declare`: create or update the schedules the tasks module declares (workers). */
/**
 * Starts the beat in the background for a process that may be told to stop before it has
 * started (its Redis may be gone): `stop` ends a started beat, and one that starts later is
 * stopped as soon as it does. `started` settles when the beat has started or failed to.
 */
export function backgroundBeat(config: BeatConfig, log: Logger, options: { declare: boolean }): { started: Promise<Beat>; stop(): Promise<void> } {
  let beat: Beat | undefined;
  let stopping = false;
  const started = startBeat(config, log, options).then((b) => {
    beat = b;
    if (stopping) void b.stop();
    return b;
  });
  return {
    started,
    async stop() {
      stopping = true;
      await beat?.stop();
    },
  };
}

export async function startBeat(config: BeatConfig, log: Logger, options: { declare: boolean }): Promise<Beat> {
  const registry = await loadRegistry(config.tasksModule);
  const redis = await connectReady(config.redisCluster ?? config.redisUrl!, 'beat');
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
        // A pass waiting on a Redis that is gone must not hold the process: its commands are
        // dropped with the connection (a tick cut short is fired by another process, once).
        const stopped = ticker.stop();
        await Promise.race([stopped, new Promise((r) => setTimeout(r, STOP_WAIT_MS).unref())]);
        redis.disconnect();
        await stopped.catch(() => {});
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
