'use strict';
// jose, pkijs, asn1js and their helpers ship ESM only; Jest's CommonJS loader needs them
// transformed, so they are allow-listed here and compiled by swc like our own TypeScript.
const esmOnly = ['jose', 'pkijs', 'asn1js', 'bytestreamjs', '@noble', '@peculiar'];
const transform = {
  '^.+\\.(t|j)sx?$': [
    '@swc/jest',
    { jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' } },
  ],
};
const common = {
  testEnvironment: 'node',
  transform,
  transformIgnorePatterns: [`/node_modules/(?!(${esmOnly.join('|')})/)`],
};
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
    },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.test.ts'] },
    { ...common, displayName: 'fuzz', testMatch: ['<rootDir>/test/fuzz/**/*.test.ts'] },
  ],
  testTimeout: 30000,
  // A private SoftHSM2 token folder per run (SOFTHSM2_CONF) for the PKCS#11 tests.
  globalSetup: '<rootDir>/test/helpers/softhsm-setup.js',
  globalTeardown: '<rootDir>/test/helpers/softhsm-teardown.js',
};
