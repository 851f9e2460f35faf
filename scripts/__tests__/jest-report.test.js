'use strict';

const fs = require('fs');
const { summarise, firstLine } = require('../jest-report');
const { makeTempDir, writeFile, runScript } = require('./cliharness');

const dir = makeTempDir(); // the suite also runs during the image build: it leaves nothing behind
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const ROOT = '/opt/retraind/scripts';

function report(suites, success = true) {
  return {
    success,
    startTime: 1764576000000,
    numTotalTests: 3,
    numPassedTests: success ? 3 : 2,
    numFailedTests: success ? 0 : 1,
    numPendingTests: 0,
    numTotalTestSuites: suites.length,
    numFailedTestSuites: success ? 0 : 1,
    testResults: suites,
  };
}

function suite(name, assertions, extra = {}) {
  return { name: `${ROOT}/__tests__/${name}`, status: 'passed', message: '', startTime: 5, endTime: 9, perfStats: { runtime: 4 }, assertionResults: assertions, ...extra };
}

const passing = (fullName) => ({ fullName, title: fullName, status: 'passed', duration: 12, failureMessages: [] });

describe('jest-report summarise', () => {
  test('keeps names, statuses and counts and drops times and absolute paths', () => {
    const got = summarise(report([suite('b.test.js', [passing('b works')]), suite('a.test.js', [passing('a works')])]), 0, ROOT);
    expect(got.success).toBe(true);
    expect(got.numPassedTests).toBe(3);
    expect(got.testResults.map((s) => s.name)).toEqual(['__tests__/a.test.js', '__tests__/b.test.js']);
    expect(JSON.stringify(got)).not.toMatch(/startTime|endTime|duration|perfStats|\/opt\//);
  });

  test('the same outcome in another order or at another time is the same document', () => {
    const one = report([suite('a.test.js', [passing('a')]), suite('b.test.js', [passing('b')])]);
    const two = { ...report([suite('b.test.js', [passing('b')], { endTime: 99 }), suite('a.test.js', [passing('a')])]), startTime: 1 };
    expect(JSON.stringify(summarise(two, 0, ROOT))).toBe(JSON.stringify(summarise(one, 0, ROOT)));
  });

  test('a failing test keeps its name and the first line of its message, without colour codes', () => {
    const failing = { fullName: 'x fails', status: 'failed', failureMessages: ['\u001b[31mError: expected 1\u001b[39m\n    at Object.<anonymous> (a.test.js:3:1)'] };
    const got = summarise(report([suite('a.test.js', [failing], { status: 'failed' })], false), 1, ROOT);
    expect(got.success).toBe(false);
    expect(got.testResults[0].assertionResults[0]).toEqual({ fullName: 'x fails', status: 'failed', failureMessages: ['Error: expected 1'] });
  });

  test('a suite that failed to load keeps the first line of its message', () => {
    const broken = suite('c.test.js', [], { status: 'failed', message: '  Test suite failed to run\n\n    SyntaxError: x' });
    expect(summarise(report([broken], false), 1, ROOT).testResults[0].message).toBe('Test suite failed to run');
  });

  test('a non-zero exit is a failure even when the report says success (jest --ci refusing, say)', () => {
    expect(summarise(report([suite('a.test.js', [passing('a')])]), 1, ROOT).success).toBe(false);
  });

  test('no report at all is a failure that says so', () => {
    expect(summarise(null, 1, ROOT)).toMatchObject({ success: false, exitCode: 1, error: 'jest wrote no report', testResults: [] });
  });

  test('firstLine of nothing is empty', () => {
    expect(firstLine(undefined)).toBe('');
  });
});

describe('jest-report CLI', () => {
  test('prints the summary of the named report with the given exit code', () => {
    const file = writeFile(dir, 'jest.json', JSON.stringify(report([suite('a.test.js', [passing('a')])])));
    const { code, stdout } = runScript('jest-report.js', [file, '0']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ success: true, exitCode: 0, numPassedTests: 3 });
  });

  test('a missing report is summarised as a failure, not a crash', () => {
    const { code, stdout } = runScript('jest-report.js', [`${dir}/none.json`, '1']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ success: false, error: 'jest wrote no report' });
  });

  test('without an exit code it prints its usage and exits 2', () => {
    const { code, stderr } = runScript('jest-report.js', ['x.json']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/usage: node jest-report.js JEST_JSON EXIT_CODE/);
  });
});
