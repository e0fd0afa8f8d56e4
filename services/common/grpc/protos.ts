import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import {
  loadPackageDefinition,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';

/**
 * The service definitions, loaded at start from the .proto files beside this module
 * (services/common/grpc/proto/) with @grpc/proto-loader. Loading the text at run time rather
 * than generating code keeps one source of truth that clients (sigstore-java, grpcurl) can
 * also be given, and lets server reflection describe exactly what is served; the cost is a
 * few milliseconds at start. The compiled build looks for the files in the source tree
 * (the container image ships the proto folder beside the compiled module).
 */

export const FULCIO_SERVICE = 'dev.sigstore.fulcio.v2.CA';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

/** How messages look in JavaScript: Fulcio's field names in lowerCamelCase, as in JSON. */
export const LOADER_OPTIONS = {
  keepCase: false,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: false,
  oneofs: true,
} as const;

/** The folder holding fulcio.proto and health.proto, from source or from dist/. */
export function protoDir(): string {
  let dir = __dirname;
  for (;;) {
    for (const candidate of [resolve(dir, 'proto'), resolve(dir, 'services/common/grpc/proto')]) {
      if (existsSync(resolve(candidate, 'fulcio.proto'))) return candidate;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('fulcio.proto not found (services/common/grpc/proto)');
    dir = parent;
  }
}

export interface Protos {
  /**
   * Both files as written (proto field names, not the camelCase the handlers use), for
   * server reflection: what grpcurl and other reflection clients build requests from.
   */
  readonly definition: PackageDefinition;
  readonly fulcio: ServiceDefinition;
  readonly health: ServiceDefinition;
}

function service(root: GrpcObject, name: string): ServiceDefinition {
  let node: unknown = root;
  for (const part of name.split('.')) node = (node as Record<string, unknown>)[part];
  const definition = (node as { service?: ServiceDefinition } | undefined)?.service;
  if (!definition) throw new Error(`service ${name} missing from the proto files`);
  return definition;
}

export function loadProtos(dir: string = protoDir()): Protos {
  const files = [resolve(dir, 'fulcio.proto'), resolve(dir, 'health.proto')];
  const root = loadPackageDefinition(loadSync(files, LOADER_OPTIONS));
  return {
    definition: loadSync(files, { ...LOADER_OPTIONS, keepCase: true }),
    fulcio: service(root, FULCIO_SERVICE),
    health: service(root, HEALTH_SERVICE),
  };
}

export interface FulcioClients {
  readonly CA: ServiceClientConstructor;
  readonly Health: ServiceClientConstructor;
}

/** grpc-js client constructors for the CA and health services (the prober's, tests'). */
export function loadClients(dir: string = protoDir()): FulcioClients {
  const root = loadPackageDefinition(
    loadSync([resolve(dir, 'fulcio.proto'), resolve(dir, 'health.proto')], LOADER_OPTIONS),
  );
  const ctor = (name: string) => {
    let node: unknown = root;
    for (const part of name.split('.')) node = (node as Record<string, unknown>)[part];
    return node as ServiceClientConstructor;
  };
  return { CA: ctor(FULCIO_SERVICE), Health: ctor(HEALTH_SERVICE) };
}
