/**
 * Whole records from the change feed for a stream of every change (WatchEvents): a change
 * published may hold only the fields it wrote (record.ts, applyEntry), so the stream keeps
 * the record of each live task it has seen and applies each change onto it. A task first
 * seen through a change (it was created before the stream opened, or was forgotten) is read
 * once; the changes heard meanwhile wait for that read, and those it already holds (a read
 * may answer before the subscription delivers the change) are not sent again. Finished
 * tasks are kept too, for that reason; at most `max` records, the least recently changed
 * forgotten first.
 */
import { applyEntry, type Hash } from '../store/record.js';

export class WholeRecords {
  private readonly known = new Map<string, Hash>();
  /** Changes waiting for a task's read, by id. */
  private readonly reading = new Map<string, Hash[]>();

  constructor(
    private readonly read: (id: string) => Promise<Hash>,
    /** Where each whole record goes, in order for each task. */
    private readonly out: (whole: Hash) => void,
    private readonly max = 10_000,
  ) {}

  change(entry: Hash): void {
    const id = entry.id;
    if (!id) return;
    const waiting = this.reading.get(id);
    if (waiting) return void waiting.push(entry);
    const base = this.known.get(id);
    if (base && Number(entry.version) <= Number(base.version)) return;
    const whole = applyEntry(base, entry);
    if (whole) return this.emit(id, whole);
    this.reading.set(id, [entry]);
    this.read(id).then(
      (current) => this.caughtUp(id, current),
      () => this.reading.delete(id),
    );
  }

  private caughtUp(id: string, current: Hash): void {
    const waiting = this.reading.get(id) ?? [];
    this.reading.delete(id);
    if (current.version === undefined) return; // expired meanwhile
    let whole = current;
    this.emit(id, whole);
    for (const entry of waiting) {
      if (Number(entry.version) <= Number(whole.version)) continue;
      const next = applyEntry(whole, entry);
      if (!next) continue;
      whole = next;
      this.emit(id, whole);
    }
  }

  private emit(id: string, whole: Hash): void {
    this.known.delete(id);
    this.known.set(id, whole);
    if (this.known.size > this.max) this.known.delete(this.known.keys().next().value!);
    this.out(whole);
  }
}
