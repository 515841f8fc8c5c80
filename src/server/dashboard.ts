/**
 * The browser dashboard: three static files (src/server/dashboard/) served on the API port
 * at GET /, read once at start. The page talks to TaskService itself, over the Connect
 * protocol with fetch (ListTasks, WatchEvents, Start, Cancel), so it needs nothing here but
 * the files. Anything that is not one of them goes on to the RPC handler.
 */
import { readFile } from 'node:fs/promises';
import type http from 'node:http';
import type http2 from 'node:http2';

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;
type Handler = (req: Request, res: Response) => void;

const FILES: Record<string, [file: string, type: string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/dashboard.js': ['dashboard.js', 'text/javascript; charset=utf-8'],
  '/dashboard.css': ['dashboard.css', 'text/css; charset=utf-8'],
};

const HEADERS = {
  'cache-control': 'no-cache',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/** `handler`, with the dashboard's files answered first. */
export async function withDashboard(handler: Handler): Promise<Handler> {
  const dir = new URL('./dashboard/', import.meta.url);
  const assets = new Map<string, { body: Buffer; type: string }>();
  for (const [path, [file, type]] of Object.entries(FILES)) {
    assets.set(path, { body: await readFile(new URL(file, dir)), type });
  }
  return (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const asset = req.method === 'GET' || req.method === 'HEAD' ? assets.get(path) : undefined;
    if (!asset) return handler(req, res);
    const out = res as http.ServerResponse;
    out.writeHead(200, { ...HEADERS, 'content-type': asset.type, 'content-length': asset.body.length });
    if (req.method === 'HEAD') out.end();
    else out.end(asset.body);
  };
}
