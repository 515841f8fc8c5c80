/**
 * W3C Trace Context (`traceparent: 00-<trace id>-<parent span id>-<flags>`), enough to carry
 * one trace from a Start request through the task record into the worker that runs it:
 * the API's span is a child of the caller's, each attempt's span a child of the API's.
 */
import { randomBytes } from './random.js';

export interface TraceContext {
  traceId: string;
  spanId: string;
  /** The span this one is a child of, when there is one. */
  parentSpanId?: string;
  flags: string;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZEROS = /^0+$/;

/** The caller's context from a `traceparent` header, or undefined when absent or malformed. */
export function parseTraceparent(header: string | null | undefined): Omit<TraceContext, 'parentSpanId'> | undefined {
  const m = header ? TRACEPARENT.exec(header.trim().toLowerCase()) : null;
  if (!m || ZEROS.test(m[1]!) || ZEROS.test(m[2]!)) return undefined;
  return { traceId: m[1]!, spanId: m[2]!, flags: m[3]! };
}

/** A new span: a child of `parent`, or the root of a new trace (sampled). */
export function childSpan(parent: Omit<TraceContext, 'parentSpanId'> | undefined): TraceContext {
  const spanId = randomBytes(8).toString('hex');
  if (!parent) return { traceId: randomBytes(16).toString('hex'), spanId, flags: '01' };
  return { traceId: parent.traceId, spanId, parentSpanId: parent.spanId, flags: parent.flags };
}

export function formatTraceparent(t: Omit<TraceContext, 'parentSpanId'>): string {
  return `00-${t.traceId}-${t.spanId}-${t.flags}`;
}

/** The fields a log line carries for a span (OpenTelemetry's names). */
export function traceFields(t: TraceContext): { trace_id: string; span_id: string; parent_span_id?: string; trace_flags: string } {
  return t.parentSpanId
    ? { trace_id: t.traceId, span_id: t.spanId, parent_span_id: t.parentSpanId, trace_flags: t.flags }
    : { trace_id: t.traceId, span_id: t.spanId, trace_flags: t.flags };
}
