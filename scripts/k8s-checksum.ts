/**
 * Keeps the mayfly Deployment's `checksum/config` annotation equal to the sha256 of the
 * ConfigMaps its pods mount, in the base and in each overlay that changes them. CI checks
 * it (test/integration/deploy/k8s-manifests.test.ts); after a config change run
 *
 *   npm run k8s:checksum
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { kustomize, repoRoot } from './kubectl';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> } & Record<
    string,
    unknown
  >;
  [key: string]: unknown;
}

/** Where each rendering takes its annotation from. */
export const CHECKSUM_FILES: Readonly<Record<string, string>> = {
  'k8s/base': 'k8s/base/mayfly/deployment.yaml',
  'k8s/overlays/dev': 'k8s/overlays/dev/config-checksum.yaml',
};

export function parseObjects(yamlText: string): K8sObject[] {
  return YAML.parseAllDocuments(yamlText)
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => !!o);
}

interface PodSpecLike {
  volumes?: { name: string; configMap?: { name: string } }[];
}

/** sha256 over the data of every ConfigMap the mayfly pods mount, by volume name. */
export function configChecksum(objects: readonly K8sObject[]): string {
  const deployment = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'mayfly');
  if (!deployment) throw new Error('no mayfly Deployment in the rendering');
  const spec = (deployment.spec as { template: { spec: PodSpecLike } }).template.spec;
  const hash = createHash('sha256');
  for (const volume of [...(spec.volumes ?? [])].sort((a, b) => a.name.localeCompare(b.name))) {
    if (!volume.configMap) continue;
    const map = objects.find(
      (o) => o.kind === 'ConfigMap' && o.metadata.name === volume.configMap!.name,
    );
    if (!map) throw new Error(`ConfigMap ${volume.configMap.name} is not in the rendering`);
    const data = (map.data ?? {}) as Record<string, string>;
    for (const key of Object.keys(data).sort())
      hash.update(`${volume.name}\0${key}\0${data[key]}\0`);
  }
  return hash.digest('hex');
}

export function annotatedChecksum(objects: readonly K8sObject[]): string | undefined {
  const deployment = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'mayfly');
  const template = (deployment?.spec as { template?: { metadata?: { annotations?: object } } })
    ?.template;
  return (template?.metadata?.annotations as Record<string, string> | undefined)?.[
    'checksum/config'
  ];
}

if (require.main === module) {
  const root = repoRoot();
  for (const [dir, file] of Object.entries(CHECKSUM_FILES)) {
    const sum = configChecksum(parseObjects(kustomize(dir, root)));
    const path = join(root, file);
    const text = readFileSync(path, 'utf8');
    const updated = text.replace(/(checksum\/config: )[0-9a-f]{64}/, `$1${sum}`);
    if (updated === text && !text.includes(sum)) throw new Error(`${file}: no checksum/config`);
    writeFileSync(path, updated);
    console.log(`${dir}: checksum/config ${sum}${updated === text ? ' (unchanged)' : ''}`);
  }
}
