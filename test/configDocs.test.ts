/**
 * docs/configuration.md, src/config.ts and `taskwire --help` name the same settings: a
 * setting added to the code without its row in the table (or a row left for a setting that
 * is gone) fails here, and so does a flag the command line does not accept.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CLIENT_SETTINGS, clientDefaults, loadConfig, parseDuration, SETTINGS } from '../src/config.js';
import { runTaskwire } from './helpers/processes.js';

const DOC = new URL('../docs/configuration.md', import.meta.url);

interface Row {
  flags: string[];
  env: string;
  /** The default column's first value, when it is one literal in backticks. */
  default: string | undefined;
}

/** The rows of the table under "## Every setting": its flags (long ones) and its variable. */
function documentedSettings(): Row[] {
  const text = readFileSync(DOC, 'utf8');
  const start = text.indexOf('\n## Every setting');
  expect(start, 'docs/configuration.md has a section "## Every setting"').toBeGreaterThan(-1);
  const rows: Row[] = [];
  for (const line of text.slice(start).split('\n').slice(2)) {
    if (line.startsWith('## ')) break;
    if (!line.startsWith('|') || /^\|\s*(flag|---)/.test(line)) continue;
    const [flagCell = '', envCell = '', defaultCell = ''] = line.split('|').slice(1);
    rows.push({
      flags: [...flagCell.matchAll(/`--([a-z-]+)`/g)].map((m) => m[1]!),
      env: /`([A-Z][A-Z0-9_]*)`/.exec(envCell)?.[1] ?? envCell.trim(),
      default: /^\s*`([^`]+)`/.exec(defaultCell)?.[1],
    });
  }
  return rows;
}

const known: { flag?: string; env: string }[] = [...Object.values(SETTINGS), ...Object.values(CLIENT_SETTINGS)];

describe('docs/configuration.md', () => {
  it('has a row for every setting config.ts reads, with its flag and variable together', () => {
    const rows = documentedSettings();
    const missing = known.filter((s) => !rows.some((r) => r.env === s.env && (s.flag === undefined || r.flags.includes(s.flag))));
    expect(missing, 'settings config.ts reads that the table lacks').toEqual([]);
  });

  it('names no setting config.ts does not know', () => {
    const unknown = documentedSettings().filter(
      (r) => !known.some((s) => s.env === r.env && r.flags.every((f) => f === s.flag) && r.flags.length === (s.flag ? 1 : 0)),
    );
    expect(unknown, 'rows of the table that config.ts does not read').toEqual([]);
  });
});

/** What config.ts gives each setting with a fixed default when nothing sets it, as the table writes it. */
function codeDefaults(): Record<string, string> {
  const c = loadConfig({}, {});
  return {
    TASKWIRE_HOST: c.host,
    TASKWIRE_PORT: String(c.port),
    TASKWIRE_QUEUES: c.queues.join(','),
    TASKWIRE_LEASE: String(c.leaseMs),
    TASKWIRE_SHUTDOWN_GRACE: String(c.shutdownGraceMs),
    TASKWIRE_RESULT_TTL: String(c.resultTtlMs),
    TASKWIRE_WATCH_HEARTBEAT: String(c.watchHeartbeatMs),
    TASKWIRE_EVENT_LOG_CAP: String(c.eventLogCap),
    TASKWIRE_MAX_PAYLOAD: String(c.maxPayloadBytes),
    TASKWIRE_MAX_CONNECTION_BUFFER_BYTES: String(c.maxConnectionBufferBytes),
    TASKWIRE_MAX_WATCHERS_PER_CONNECTION: String(c.maxWatchersPerConnection),
    TASKWIRE_MAX_STREAMS: String(c.maxStreams),
    TASKWIRE_MAX_STREAM_BACKLOG: String(c.maxStreamBacklog),
    TASKWIRE_PUBLIC: c.publicEndpoints.join(','),
    TASKWIRE_LOG: c.log.level,
    TASKWIRE_DATA_DIR: c.dataDir,
    TASKWIRE_SERVER: clientDefaults({}).server,
  };
}

describe('the defaults in docs/configuration.md', () => {
  it('are the ones config.ts uses', () => {
    const code = codeDefaults();
    const durations = new Set<string>([SETTINGS.lease.env, SETTINGS.grace.env, SETTINGS.resultTtl.env, SETTINGS.watchHeartbeat.env]);
    const wrong = documentedSettings()
      .filter((r) => r.env in code)
      .map((r) => ({ env: r.env, documented: r.default, inCode: code[r.env] }))
      .filter(({ env, documented, inCode }) => (durations.has(env) ? String(parseDuration(documented ?? '')) !== inCode : documented !== inCode));
    expect(wrong, 'defaults the table gives that config.ts does not use').toEqual([]);
    const documented = new Set(documentedSettings().map((r) => r.env));
    expect(Object.keys(code).filter((env) => !documented.has(env))).toEqual([]);
  });
});

describe('taskwire --help', () => {
  it('accepts every flag and names every setting, and no other', async () => {
    const args = known.flatMap((s) => (s.flag ? [`--${s.flag}`, 'x'] : []));
    const { code, stdout, stderr } = await runTaskwire(['--help', ...args]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const named = known.filter((s) => !stdout.includes(s.env) || (s.flag !== undefined && !stdout.includes(`--${s.flag} `)));
    expect(named, 'settings the help does not name').toEqual([]);
    const pairs = [...stdout.matchAll(/--([a-z-]+) \/ ([A-Z_]+)/g)].map((m) => ({ flag: m[1]!, env: m[2]! }));
    const strangers = pairs.filter((p) => !known.some((s) => s.flag === p.flag && s.env === p.env));
    expect(strangers, 'flag / variable pairs in the help that config.ts does not read').toEqual([]);
  });
});
