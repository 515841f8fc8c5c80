/**
 * gRPC's length-prefixed messages, for the client and the server alike: one flag byte
 * (COMPRESSED set for a compressed message), a 4-byte big-endian length, the message.
 */
import { Code, ConnectError } from '@connectrpc/connect';

export const COMPRESSED = 0b1;
const EMPTY = Buffer.alloc(0);

/** One message framed for the wire, in one buffer (one write, one DATA frame). */
export function envelope(data: Uint8Array, flags = 0): Buffer {
  const b = Buffer.allocUnsafe(data.byteLength + 5);
  b[0] = flags;
  b.writeUInt32BE(data.byteLength, 1);
  b.set(data, 5);
  return b;
}

export interface Envelope {
  flags: number;
  data: Uint8Array;
}

/** Splits a body (a request or a response) into enveloped messages, whatever its chunks. */
export class EnvelopeReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private want = -1;
  private flags = 0;

  constructor(private readonly readMaxBytes: number) {}

  get pending(): number {
    return this.buffered;
  }

  /** Whether a message has begun that is not complete yet (some of its prefix, or of its bytes). */
  get midMessage(): boolean {
    return this.want >= 0 || this.buffered > 0;
  }

  /** Adds a chunk; appends the messages it completes to `out`. Throws on a message over readMaxBytes. */
  push(chunk: Buffer, out: Envelope[]): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.want < 0) {
        if (this.buffered < 5) return;
        const head = this.take(5);
        this.flags = head[0]!;
        this.want = head.readUInt32BE(1);
        if (this.want > this.readMaxBytes) {
          throw new ConnectError(`message size ${this.want} is larger than configured readMaxBytes ${this.readMaxBytes}`, Code.ResourceExhausted);
        }
      }
      if (this.buffered < this.want) return;
      out.push({ flags: this.flags, data: this.take(this.want) });
      this.want = -1;
    }
  }

  private take(n: number): Buffer {
    if (n === 0) return EMPTY; // a message whose fields all have their default values
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }
}
