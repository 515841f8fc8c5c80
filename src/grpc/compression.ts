/**
 * gzip, the one message compression taskwire speaks on gRPC (client and server alike): a
 * call that sends `grpc-encoding: gzip` may flag any of its messages COMPRESSED, and gets
 * its reply compressed the same way. Messages under COMPRESS_MIN_BYTES go plain even then:
 * compressing them costs more than the bytes it saves.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { Code, ConnectError } from '@connectrpc/connect';
import { COMPRESSED, envelope } from './envelope.js';

export const GZIP = 'gzip';
/** As Connect's default compressMinBytes. */
export const COMPRESS_MIN_BYTES = 1024;

/** One message framed for the wire, gzipped (and flagged so) when it is large enough. */
export function gzipEnvelope(data: Uint8Array): Buffer {
  return data.byteLength < COMPRESS_MIN_BYTES ? envelope(data) : envelope(gzipSync(data), COMPRESSED);
}

/** The bytes of a gzipped message; RESOURCE_EXHAUSTED past readMaxBytes, INTERNAL when it is not gzip. */
export function gunzip(data: Uint8Array, readMaxBytes: number): Uint8Array {
  try {
    return gunzipSync(data, { maxOutputLength: readMaxBytes });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new ConnectError(`message is larger than configured readMaxBytes ${readMaxBytes} after decompression`, Code.ResourceExhausted);
    }
    throw new ConnectError('decompression failed', Code.Internal, undefined, undefined, err);
  }
}
