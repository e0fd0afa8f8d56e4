'use strict';
// Jest globalSetup: one private SoftHSM2 configuration and token folder per test run, in a
// temp dir. SoftHSM reads SOFTHSM2_CONF from the real environment when its module is
// initialised, and a test file's `process.env` is a copy, so it is set here, in the parent,
// before any worker starts; test files make tokens with labels of their own in it.
const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

module.exports = async function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'mayfly-softhsm-'));
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens);
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(
    conf,
    `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`,
  );
  process.env.SOFTHSM2_CONF = conf;
  process.env.MAYFLY_TEST_SOFTHSM_DIR = dir;
};

module.exports.teardown = async function teardown() {
  const dir = process.env.MAYFLY_TEST_SOFTHSM_DIR;
  if (dir) rmSync(dir, { recursive: true, force: true });
};
