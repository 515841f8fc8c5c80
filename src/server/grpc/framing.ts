/**
 * gRPC's length-prefixed messages: one flag byte (1 = compressed), a 4-byte big-endian
 * length, then the message. The native path only takes uncompressed messages (a request
 * that names an encoding goes to Connect's handler, which decompresses).
 */
import { Code, ConnectError } from '@connectrpc/connect';

const HEADER = 5;

/** One message framed for the wire, in one buffer (one write, one DATA frame). */
export function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, HEADER);
  return out;
}

/** Collects a request body's chunks into whole messages, refusing any over `maxBytes`. */
export class FrameReader {
  private buffered: Buffer[] = [];
  private size = 0;
  readonly messages: Uint8Array[] = [];

  constructor(private readonly maxBytes: number) {}

  /** Throws a ConnectError for a compressed flag or a message over the limit. */
  push(chunk: Buffer): void {
    this.buffered.push(chunk);
    this.size += chunk.length;
    while (this.size >= HEADER) {
      const head = this.buffered.length === 1 ? this.buffered[0]! : this.join();
      const length = head.readUInt32BE(1);
      if (head[0] !== 0) {
        throw new ConnectError('protocol error: a compressed message without a grpc-encoding header', Code.Internal);
      }
      if (length > this.maxBytes) {
        throw new ConnectError(`message size ${length} is larger than configured readMaxBytes ${this.maxBytes}`, Code.ResourceExhausted);
      }
      if (this.size < HEADER + length) return;
      this.messages.push(head.subarray(HEADER, HEADER + length));
      const rest = head.subarray(HEADER + length);
      this.buffered = rest.length ? [rest] : [];
      this.size = rest.length;
    }
  }

  /** Whether the body ended between messages (not inside one). */
  get complete(): boolean {
    return this.size === 0;
  }

  private join(): Buffer {
    const all = Buffer.concat(this.buffered, this.size);
    this.buffered = [all];
    return all;
  }
}
