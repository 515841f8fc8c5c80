/** Reading an API server's /metrics from a test. */

/** taskwire_streams_open on the API server, polled until `want` (the server lets go of a
 * stream when the client's cancel reaches it, a moment after the client moved on). */
export async function serverStreamsOpen(baseUrl: string, want: number): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    const n = Number(/^taskwire_streams_open (\d+)$/m.exec(text)?.[1]);
    if (n === want || Date.now() > deadline) return n;
    await new Promise((r) => setTimeout(r, 50));
  }
}
