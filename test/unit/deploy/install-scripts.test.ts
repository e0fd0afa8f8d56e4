import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * npm 11 lists the dependencies whose install scripts no `allowScripts` entry in package.json
 * covers, and its documentation says such scripts are skipped by default. One of ours must
 * run: pkcs11js builds the native addon of the PKCS#11 signer at `npm ci` (in CI, in the
 * image's build stage and under `npm run serve`). So every package the lock file marks as
 * having an install script is decided in package.json, and pkcs11js is allowed.
 */

const root = resolve(__dirname, '../../..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  allowScripts?: Record<string, boolean>;
};
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { hasInstallScript?: boolean }>;
};

/** `node_modules/a/node_modules/@b/c` → `@b/c`. */
const nameOf = (path: string) => path.slice(path.lastIndexOf('node_modules/') + 13);

describe('install scripts', () => {
  const withScripts = [
    ...new Set(
      Object.entries(lock.packages)
        .filter(([path, entry]) => path !== '' && entry.hasInstallScript)
        .map(([path]) => nameOf(path)),
    ),
  ].sort();

  it('are decided in package.json for every package of the lock file that has one', () => {
    expect(withScripts).toContain('pkcs11js');
    expect(withScripts.filter((name) => pkg.allowScripts?.[name] === undefined)).toEqual([]);
  });

  it('run for pkcs11js, whose addon the PKCS#11 signer loads', () => {
    expect(pkg.allowScripts?.pkcs11js).toBe(true);
    expect(existsSync(join(root, 'node_modules/pkcs11js/build/Release/pkcs11.node'))).toBe(true);
  });

  it('name no package that no longer has one', () => {
    expect(Object.keys(pkg.allowScripts ?? {}).filter((n) => !withScripts.includes(n))).toEqual([]);
  });
});
