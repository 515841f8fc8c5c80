/**
 * gRPC server reflection (v1 and v1alpha), called through @grpc/grpc-js with a client built
 * by proto-loader from proto/grpc/reflection/. The descriptors it returns are decoded and
 * linked with @bufbuild/protobuf the way `grpcurl describe` does it: ask for the file that
 * holds a symbol, fetch any import still missing by file name, build a registry, resolve.
 * (grpcurl itself cannot be installed here: it is not packaged in Debian and the Go module
 * proxy is out of reach, so this test does its job.) It checks what the @grpc/reflection
 * package gets wrong (grpc/grpc-node#2958): imports of well-known types, and map<> fields.
 * Last, `buf curl` (a dev dependency; Go's protobuf runtime, which refuses descriptors that
 * do not link) lists the services and calls Start and GetStatus through reflection alone.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { create, createFileRegistry, fromBinary, type FileRegistry } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './helpers/stack.js';

const PROTO = fileURLToPath(new URL('../proto/', import.meta.url));
const BUF = fileURLToPath(new URL('../node_modules/.bin/buf', import.meta.url));
const run = promisify(execFile);
const VERSIONS = ['v1', 'v1alpha'] as const;

let stack: Stack;
const clients = new Map<string, grpc.Client>();

beforeAll(async () => {
  stack = await startStack({ workers: 0 });
  for (const v of VERSIONS) {
    const def = protoLoader.loadSync(`grpc/reflection/${v}/reflection.proto`, { includeDirs: [PROTO], keepCase: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as any;
    const Service = pkg.grpc.reflection[v].ServerReflection as typeof grpc.Client;
    clients.set(v, new Service(`127.0.0.1:${stack.api.port}`, grpc.credentials.createInsecure()));
  }
});
afterAll(async () => {
  for (const c of clients.values()) c.close();
  await stack?.stop();
});

/** One request on the bidi stream, as grpcurl sends them; the one response. */
function reflect(version: string, request: object): Promise<any> {
  return new Promise((resolve, reject) => {
    const call = (clients.get(version) as any).ServerReflectionInfo() as grpc.ClientDuplexStream<object, any>;
    let reply: any;
    call.on('data', (msg: any) => (reply = msg));
    call.on('error', reject);
    call.on('end', () => resolve(reply));
    call.write({ host: '', ...request });
    call.end();
  });
}

function decodeFiles(reply: any): FileDescriptorProto[] {
  expect(reply.message_response).toBe('file_descriptor_response');
  return (reply.file_descriptor_response.file_descriptor_proto as Buffer[]).map((b) => fromBinary(FileDescriptorProtoSchema, b));
}

/** grpcurl's way: the file holding `symbol`, then every missing import by file name. */
async function describeSymbol(version: string, symbol: string): Promise<{ registry: FileRegistry; files: Map<string, FileDescriptorProto> }> {
  const files = new Map<string, FileDescriptorProto>();
  const holder = decodeFiles(await reflect(version, { file_containing_symbol: symbol }));
  for (const f of holder) files.set(f.name, f);
  for (let missing = [...files.values()].flatMap((f) => f.dependency).filter((d) => !files.has(d)); missing.length; ) {
    for (const name of missing) for (const f of decodeFiles(await reflect(version, { file_by_filename: name }))) files.set(f.name, f);
    missing = [...files.values()].flatMap((f) => f.dependency).filter((d) => !files.has(d));
  }
  // The server sends the file first and its imports after (as grpc-go's reflection does);
  // a FileDescriptorSet for createFileRegistry lists every import before its importer.
  const ordered: FileDescriptorProto[] = [];
  const visit = (name: string) => {
    const f = files.get(name)!;
    if (ordered.includes(f)) return;
    f.dependency.forEach(visit);
    ordered.push(f);
  };
  visit(holder[0]!.name);
  const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
  return { registry, files };
}

describe.each(VERSIONS)('grpc.reflection.%s.ServerReflection', (version) => {
  it('list_services names every service served', async () => {
    const reply = await reflect(version, { list_services: '' });
    expect(reply.message_response).toBe('list_services_response');
    const names = reply.list_services_response.service.map((s: { name: string }) => s.name);
    expect(names).toEqual(
      expect.arrayContaining(['taskwire.v1.TaskService', 'grpc.health.v1.Health', `grpc.reflection.${version}.ServerReflection`]),
    );
  });

  it('file_containing_symbol taskwire.v1.Task resolves Timestamp and Value fields', async () => {
    const first = decodeFiles(await reflect(version, { file_containing_symbol: 'taskwire.v1.Task' }));
    expect(first[0]!.name).toBe('taskwire/v1/task.proto');
    expect(first[0]!.dependency).toEqual(expect.arrayContaining(['google/protobuf/struct.proto', 'google/protobuf/timestamp.proto']));

    // The reply carries every file the first one needs, each once.
    const names = first.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);
    for (const f of first) expect(names).toEqual(expect.arrayContaining(f.dependency));
    // And each import can be asked for by its file name, as grpcurl does.
    const ts = decodeFiles(await reflect(version, { file_by_filename: 'google/protobuf/timestamp.proto' }));
    expect(ts[0]!.name).toBe('google/protobuf/timestamp.proto');
    expect(ts[0]!.package).toBe('google.protobuf');

    const { registry } = await describeSymbol(version, 'taskwire.v1.Task');
    const task = registry.getMessage('taskwire.v1.Task')!;
    expect(task).toBeDefined();
    const typeOf = (name: string) => {
      const f = task.fields.find((x) => x.name === name)!;
      return f.fieldKind === 'message' ? f.message.typeName : f.fieldKind;
    };
    expect(typeOf('created_at')).toBe('google.protobuf.Timestamp');
    expect(typeOf('finished_at')).toBe('google.protobuf.Timestamp');
    expect(typeOf('result')).toBe('google.protobuf.Value');
    expect(typeOf('args')).toBe('google.protobuf.ListValue');
    expect(typeOf('kwargs')).toBe('google.protobuf.Struct');
    expect(typeOf('error')).toBe('taskwire.v1.TaskError');
    // The well-known types themselves came over with their real fields.
    expect(registry.getMessage('google.protobuf.Timestamp')!.fields.map((f) => f.name)).toEqual(['seconds', 'nanos']);
    const value = registry.getMessage('google.protobuf.Value')!;
    expect(value.oneofs[0]!.fields.map((f) => f.name)).toContain('struct_value');
    // Struct's map<string, Value> is itself a proper map.
    const structFields = registry.getMessage('google.protobuf.Struct')!.fields[0]!;
    expect(structFields.fieldKind).toBe('map');
    expect(registry.getEnum('taskwire.v1.TaskState')!.values.map((v) => v.name)).toContain('TASK_STATE_SUCCESS');
  });

  it('describes the service and its methods by symbol', async () => {
    const { registry } = await describeSymbol(version, 'taskwire.v1.TaskService');
    const service = registry.getService('taskwire.v1.TaskService')!;
    const methods = Object.fromEntries(service.methods.map((m) => [m.name, [m.methodKind, m.input.typeName, m.output.typeName]]));
    expect(methods).toMatchObject({
      Start: ['unary', 'taskwire.v1.StartRequest', 'taskwire.v1.StartResponse'],
      GetStatus: ['unary', 'taskwire.v1.GetStatusRequest', 'taskwire.v1.GetStatusResponse'],
      Cancel: ['unary', 'taskwire.v1.CancelRequest', 'taskwire.v1.CancelResponse'],
      WatchStatus: ['server_streaming', 'taskwire.v1.WatchStatusRequest', 'taskwire.v1.WatchStatusResponse'],
    });
    // A method's full name is a symbol too (grpcurl describe taskwire.v1.TaskService.Start).
    expect(decodeFiles(await reflect(version, { file_containing_symbol: 'taskwire.v1.TaskService.Start' }))[0]!.name).toBe(
      'taskwire/v1/task_service.proto',
    );
  });

  it('map<> fields are maps: a nested *Entry message with the map_entry option', async () => {
    for (const [symbol, field, entry] of [
      ['grpc.health.v1.HealthListResponse', 'statuses', 'StatusesEntry'],
      ['google.rpc.ErrorInfo', 'metadata', 'MetadataEntry'],
    ] as const) {
      const { registry, files } = await describeSymbol(version, symbol);
      const message = registry.getMessage(symbol)!;
      const f = message.fields.find((x) => x.name === field)!;
      expect(f.fieldKind, `${symbol}.${field}`).toBe('map');
      if (f.fieldKind === 'map') expect(f.mapKey).toBe(9); // string
      // In the raw descriptor, as grpcurl reads it.
      const raw = [...files.values()].flatMap((file) => file.messageType).find((m) => symbol.endsWith(`.${m.name}`))!;
      const nested = raw.nestedType.find((n) => n.name === entry)!;
      expect(nested, `${symbol} has ${entry}`).toBeDefined();
      expect(nested.options?.mapEntry).toBe(true);
      const rawField = raw.field.find((x) => x.name === field)!;
      expect(rawField.typeName).toBe(`.${symbol}.${entry}`);
    }
  });

  it('an unknown symbol is NOT_FOUND in the reply', async () => {
    const reply = await reflect(version, { file_containing_symbol: 'taskwire.v1.Nope' });
    expect(reply.message_response).toBe('error_response');
    expect(reply.error_response.error_code).toBe(grpc.status.NOT_FOUND);
  });
});

describe('buf curl, a Go reflection client like grpcurl', () => {
  const bufCurl = (...args: string[]) => run(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args], { timeout: 20_000 });
  const base = () => `http://127.0.0.1:${stack.api.port}`;

  it('lists the services and the methods through reflection', async () => {
    const services = (await bufCurl('--list-services', base())).stdout.trim().split('\n');
    expect(services).toEqual(expect.arrayContaining(['taskwire.v1.TaskService', 'grpc.health.v1.Health']));
    const methods = (await bufCurl('--list-methods', base())).stdout;
    expect(methods).toContain('taskwire.v1.TaskService/WatchStatus');
  });

  it('calls Start and GetStatus with no proto file at hand', async () => {
    const started = JSON.parse(
      (await bufCurl('-d', '{"name":"hello","args":["Lucy"],"kwargs":{"n":1}}', `${base()}/taskwire.v1.TaskService/Start`)).stdout,
    );
    expect(started.task).toMatchObject({ name: 'hello', state: 'TASK_STATE_PENDING', args: ['Lucy'], kwargs: { n: 1 }, version: '1' });
    // Timestamps print as RFC 3339 text: the Timestamp type was resolved.
    expect(started.task.createdAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    const status = JSON.parse((await bufCurl('-d', `{"id":"${started.task.id}"}`, `${base()}/taskwire.v1.TaskService/GetStatus`)).stdout);
    expect(status.task.id).toBe(started.task.id);
    const health = JSON.parse((await bufCurl('-d', '{}', `${base()}/grpc.health.v1.Health/List`)).stdout);
    // A map<string, HealthCheckResponse> printed as a JSON object.
    expect(health.statuses['taskwire.v1.TaskService']).toEqual({ status: 'SERVING' });
  });
});
