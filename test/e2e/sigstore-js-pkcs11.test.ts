/**
 * The sigstore-js end-to-end suite once more, with the CA key in a SoftHSM2 token: every
 * mayfly it starts signs through the pkcs11 signer (see test/helpers/mayfly.ts).
 */
process.env.MAYFLY_TEST_CA = 'pkcs11';
// eslint-disable-next-line @typescript-eslint/no-require-imports
require('./sigstore-js.test');
