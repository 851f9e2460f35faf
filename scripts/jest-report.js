#!/usr/bin/env node
'use strict';
/**
 * CLI: the outcome of a Jest run (its --json report) without what changes from one run to the next.
 *
 * The Containerfile runs the Jest suite once per image and keeps this summary in the image, so the
 * validate stage reads the suite's outcome instead of running it again for every data drop. Image
 * IDs must stay a function of the inputs (`podman build --timestamp 0`): times, absolute paths and
 * the order in which Jest's workers finished are left out; suites are sorted by name.
 *
 *   node jest-report.js JEST_JSON EXIT_CODE > summary.json
 */

const fs = require('fs');
const path = require('path');

const ANSI = /\u001b\[[0-9;]*m/g;

function firstLine(text) {
  return String(text || '').replace(ANSI, '').trim().split('\n')[0];
}

function summariseSuite(suite, root) {
  const assertions = (suite.assertionResults || []).map((a) => ({
    fullName: a.fullName,
    status: a.status,
    failureMessages: a.status === 'failed' ? [firstLine((a.failureMessages || [])[0])] : [],
  }));
  return {
    name: path.relative(root, suite.name || '?'),
    status: suite.status,
    message: suite.status === 'failed' ? firstLine(suite.message) : '',
    assertionResults: assertions,
  };
}

/** The deterministic part of a Jest --json report; `exitCode` is Jest's own. */
function summarise(report, exitCode, root) {
  if (report === null) {
    return { exitCode, success: false, numTotalTests: 0, numPassedTests: 0, numFailedTests: 0, error: 'jest wrote no report', testResults: [] };
  }
  const suites = (report.testResults || []).map((s) => summariseSuite(s, root));
  suites.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return {
    exitCode,
    success: Boolean(report.success) && exitCode === 0,
    numTotalTests: report.numTotalTests,
    numPassedTests: report.numPassedTests,
    numFailedTests: report.numFailedTests,
    numPendingTests: report.numPendingTests,
    numTotalTestSuites: report.numTotalTestSuites,
    numFailedTestSuites: report.numFailedTestSuites,
    testResults: suites,
  };
}

function readReport(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    if (e.code === 'ENOENT' || e instanceof SyntaxError) return null;
    throw e;
  }
}

if (require.main === module) {
  const [file, code] = process.argv.slice(2);
  if (!file || code === undefined || !/^\d+$/.test(code)) {
    process.stderr.write('usage: node jest-report.js JEST_JSON EXIT_CODE\n');
    process.exit(2);
  }
  process.stdout.write(JSON.stringify(summarise(readReport(file), Number(code), process.cwd()), null, 1) + '\n');
}

module.exports = { summarise, firstLine };
