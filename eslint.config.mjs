import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

// One-way module boundaries from ARCHITECTURE.md: each entry forbids imports from the
// listed folders into the folder it names.
const caDir = 'services/ca';
const boundaries = {
  common: [
    'http',
    'ra',
    'identity',
    'pop',
    'ratelimit',
    'issuance',
    'signer',
    'config',
    'metrics',
    'audit',
  ],
  audit: ['http', 'ra', 'identity', 'pop', 'ratelimit', 'issuance', 'signer', 'config', 'metrics'],
  config: ['http', 'ra', 'identity', 'pop', 'ratelimit', 'issuance', 'signer'],
  signer: ['http', 'ra', 'identity', 'pop', 'ratelimit', 'issuance'],
  issuance: ['http', 'ra', 'identity', 'pop', 'ratelimit'],
  identity: ['http', 'ra', 'pop', 'ratelimit', 'issuance', 'signer'],
  pop: ['http', 'ra', 'identity', 'ratelimit', 'issuance', 'signer'],
  ra: ['http', 'signer'],
  metrics: ['http', 'ra', 'identity', 'pop', 'ratelimit', 'issuance', 'signer'],
  http: ['signer', 'grpc'],
  // The gRPC transport: like http/, it reaches the CA only through ra/.
  grpc: ['http', 'signer', 'issuance', 'pop', 'ratelimit', 'config'],
};
// Leaf modules that every part may use and that use none of them.
const caModules = [...new Set(Object.values(boundaries).flat()), 'common', 'gocompat'];
boundaries.gocompat = caModules.filter((m) => m !== 'gocompat' && m !== 'common');
boundaries['certificate-identity'] = caModules.filter((m) => m !== 'common');
// http imports only ra and common (ARCHITECTURE.md): everything else it gets is injected.
boundaries.http = [...caModules, 'certificate-identity'].filter(
  (m) => m !== 'http' && m !== 'ra' && m !== 'common',
);
const boundaryConfigs = Object.entries(boundaries).map(([from, banned]) => ({
  files: [`${caDir}/${from}/**/*.ts`],
  rules: {
    '@typescript-eslint/no-restricted-imports': [
      'error',
      {
        patterns: [
          ...banned.map((dir) => ({
            group: [`**/${dir}/*`, `**/${dir}`],
            message: `${from}/ must not import ${dir}/ (see ARCHITECTURE.md boundaries)`,
          })),
          ...(from === 'http'
            ? []
            : [{ group: ['express'], message: 'only http/ imports express' }]),
        ],
      },
    ],
  },
}));

// The rate limiter lives in services/common/ratelimit (the CA and the TSA both spend through
// it); the patterns above still keep it out of issuance/, identity/, pop/ and the rest.
// Code shared by the deployables (services/common) imports none of them; a deployable
// imports another only over HTTP, never its modules.
const deployables = ['ca', 'tsa', 'ctlog', 'prober', 'dev-issuer', 'cli'];
const sharedConfigs = [
  {
    files: ['services/common/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: deployables.map((d) => ({
            group: [`**/services/${d}/*`, `../${d}/*`, `../../${d}/*`],
            message: `services/common must not import services/${d} (see ARCHITECTURE.md boundaries)`,
          })),
        },
      ],
    },
  },
];

// The TSA and the operator commands import no other deployable either (the CLI reaches the
// CA and the TSA over HTTP, and starts them as processes by path).
const isolatedDeployables = ['tsa', 'cli'];
const isolationConfigs = isolatedDeployables.map((self) => ({
  files: [`services/${self}/**/*.ts`],
  rules: {
    '@typescript-eslint/no-restricted-imports': [
      'error',
      {
        patterns: deployables
          .filter((d) => d !== self)
          .map((d) => ({
            group: [`**/services/${d}/*`, `../${d}/*`, `../../${d}/*`],
            message: `services/${self} must not import services/${d}: deployables talk over HTTP (see ARCHITECTURE.md)`,
          })),
      },
    ],
  },
}));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bench/results/**', '.tools/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
    languageOptions: {
      sourceType: 'commonjs',
      globals: { module: 'writable', require: 'readonly' },
    },
  },
  ...boundaryConfigs,
  ...sharedConfigs,
  ...isolationConfigs,
  prettier,
);
