/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha), answered from the descriptors
 * embedded in the generated code. Serving those exact FileDescriptorProtos keeps imports
 * of well-known types and map<> entry messages right (the @grpc/reflection package gets
 * both wrong: grpc/grpc-node#2958), so grpcurl list/describe work without proto files.
 */
import { create, toBinary, type DescFile, type DescMessage } from '@bufbuild/protobuf';
import type { GenService } from '@bufbuild/protobuf/codegenv2';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import { file_google_rpc_error_details } from '../../gen/google/rpc/error_details_pb.js';
import * as v1 from '../../gen/grpc/reflection/v1/reflection_pb.js';
import * as v1alpha from '../../gen/grpc/reflection/v1alpha/reflection_pb.js';

/** Every file reachable from the given ones, by name; every symbol, by full name. */
class DescriptorIndex {
  readonly files = new Map<string, DescFile>();
  readonly symbols = new Map<string, DescFile>();

  constructor(roots: readonly DescFile[]) {
    for (const f of roots) this.add(f);
  }

  private add(file: DescFile): void {
    if (this.files.has(`${file.name}.proto`)) return;
    this.files.set(`${file.name}.proto`, file);
    for (const dep of file.dependencies) this.add(dep);
    const addMessage = (m: DescMessage) => {
      this.symbols.set(m.typeName, file);
      for (const f of m.fields) this.symbols.set(`${m.typeName}.${f.name}`, file);
      m.nestedMessages.forEach(addMessage);
      for (const e of m.nestedEnums) this.symbols.set(e.typeName, file);
    };
    file.messages.forEach(addMessage);
    for (const e of file.enums) this.symbols.set(e.typeName, file);
    for (const s of file.services) {
      this.symbols.set(s.typeName, file);
      for (const m of s.methods) this.symbols.set(`${s.typeName}.${m.name}`, file);
    }
  }

  /** The file and everything it imports, each serialized once, the file itself first. */
  closure(file: DescFile): Uint8Array[] {
    const out: Uint8Array[] = [];
    const seen = new Set<string>();
    const visit = (f: DescFile) => {
      if (seen.has(f.name)) return;
      seen.add(f.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      f.dependencies.forEach(visit);
    };
    visit(file);
    return out;
  }
}

type Api = typeof v1 | typeof v1alpha;
type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;

const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

function respond(api: Api, index: DescriptorIndex, services: readonly string[], req: Request) {
  const base = { validHost: req.host, originalRequest: req as never };
  const error = (code: number, message: string) =>
    create(api.ServerReflectionResponseSchema as typeof v1.ServerReflectionResponseSchema, {
      ...base,
      messageResponse: { case: 'errorResponse', value: { errorCode: code, errorMessage: message } },
    });
  const files = (file: DescFile | undefined, what: string) =>
    file
      ? create(api.ServerReflectionResponseSchema as typeof v1.ServerReflectionResponseSchema, {
          ...base,
          messageResponse: { case: 'fileDescriptorResponse', value: { fileDescriptorProto: index.closure(file) } },
        })
      : error(NOT_FOUND, `${what} not found`);

  const r = req.messageRequest;
  switch (r.case) {
    case 'listServices':
      return create(api.ServerReflectionResponseSchema as typeof v1.ServerReflectionResponseSchema, {
        ...base,
        messageResponse: { case: 'listServicesResponse', value: { service: services.map((name) => ({ name })) } },
      });
    case 'fileByFilename':
      return files(index.files.get(r.value), `file ${r.value}`);
    case 'fileContainingSymbol':
      return files(index.symbols.get(r.value.replace(/^\./, '')), `symbol ${r.value}`);
    case 'allExtensionNumbersOfType':
      return create(api.ServerReflectionResponseSchema as typeof v1.ServerReflectionResponseSchema, {
        ...base,
        messageResponse: { case: 'allExtensionNumbersResponse', value: { baseTypeName: r.value, extensionNumber: [] } },
      });
    case 'fileContainingExtension':
      return error(NOT_FOUND, 'no extensions are defined');
    default:
      return error(UNIMPLEMENTED, 'unknown request');
  }
}

export interface Reflection {
  v1: [typeof v1.ServerReflection, ServiceImpl<typeof v1.ServerReflection>];
  v1alpha: [typeof v1alpha.ServerReflection, ServiceImpl<typeof v1alpha.ServerReflection>];
}

/** Reflection over the given services (and the reflection services themselves). */
export function createReflection(served: readonly GenService<any>[]): Reflection {
  const all = [...served, v1.ServerReflection, v1alpha.ServerReflection];
  // The error detail types too (ErrorInfo, BadRequest): no service file imports them, and
  // without them grpcurl and buf curl show an error's details as opaque bytes.
  const index = new DescriptorIndex([...all.map((s) => s.file), file_google_rpc_error_details]);
  const names = all.map((s) => s.typeName).sort();
  const impl = (api: Api) => ({
    async *serverReflectionInfo(requests: AsyncIterable<Request>) {
      for await (const req of requests) yield respond(api, index, names, req);
    },
  });
  return {
    v1: [v1.ServerReflection, impl(v1) as ServiceImpl<typeof v1.ServerReflection>],
    v1alpha: [v1alpha.ServerReflection, impl(v1alpha) as unknown as ServiceImpl<typeof v1alpha.ServerReflection>],
  };
}
