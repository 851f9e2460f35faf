'use strict';
/** gate.js (the data checks, then preprocessing with the parity check, in one process) and the
 * parity pipe of preprocess.js --parity. The real parity.py runs under python3 unless a test puts a
 * stand-in first (RETRAIND_PYTHON). */

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { makeTempDir, writeFile, runScript } = require('./cliharness');

const SCRIPTS_DIR = path.join(__dirname, '..');
const LABELS = ['negative', 'neutral', 'positive'];

let dir;
beforeAll(() => { dir = makeTempDir(); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A drop of n distinct rows in three classes, with some text the cleaner changes (case, punctuation, stop words, accents). */
function drop(name, n) {
  const rows = Array.from({ length: n }, (_, i) => `"Row ${i}: the Café is ${i % 7 ? 'GREAT' : 'not, great'}!",${LABELS[i % 3]}`);
  return writeFile(dir, name, `text,sentiment\n${rows.join('\n')}\n`);
}

/** A file's bytes as text (toBe on strings: toEqual on megabyte Buffers takes Jest seconds). */
function read(file) {
  return fs.readFileSync(file, 'latin1');
}

/** Runs scripts/<script> with an environment of its own (a stand-in python). */
function runWith(script, args, env) {
  const result = spawnSync(process.execPath, [path.join(SCRIPTS_DIR, script), ...args], { encoding: 'utf8', timeout: 60000, env: { ...process.env, ...env } });
  if (result.error) throw result.error;
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A stand-in for python: reads the rows it is fed, writes `report` to the --report path, exits `code`. */
function standIn(name, report, code) {
  const file = writeFile(dir, name, `#!/bin/sh\ncat >"$0.rows"\nprintf '%s' '${JSON.stringify(report)}' >"$5"\nexit ${code}\n`);
  fs.chmodSync(file, 0o755);
  return file;
}

/** Output paths for one gate.js run named `name`. */
function outputs(name) {
  const at = (suffix) => path.join(dir, `${name}.${suffix}`);
  return { report: at('check.json'), output: at('jsonl'), summary: at('summary.json'), parity: at('parity.json') };
}

function gate(name, inputs, env = {}) {
  const o = outputs(name);
  const args = ['--report', o.report, '--output', o.output, '--summary', o.summary, '--parity', o.parity, ...inputs];
  return { ...o, ...runWith('gate.js', args, env) };
}

describe('gate.js', () => {
  test('a drop that passes is checked, then preprocessed exactly as preprocess.js does, and the Python port agrees on every row', () => {
    const input = drop('good.csv', 3000);
    const result = gate('good', [input]);
    expect(result.code).toBe(0);
    expect(JSON.parse(fs.readFileSync(result.report, 'utf8'))).toMatchObject({ passed: true, rows: 3000 });
    const alone = path.join(dir, 'alone.jsonl');
    expect(runScript('preprocess.js', ['--output', alone, input]).code).toBe(0);
    expect(read(result.output)).toBe(read(alone));
    const summary = JSON.parse(fs.readFileSync(result.summary, 'utf8'));
    expect(summary).toMatchObject({ rows_in: 3000, rows_out: 3000 });
    expect(JSON.parse(fs.readFileSync(result.parity, 'utf8'))).toMatchObject({ rows: 3000, mismatches: 0 });
  });

  test('a rejected drop is never preprocessed: exit 1, the report says why, no training set and no parity run', () => {
    const input = writeFile(dir, 'semicolons.csv', 'sentiment;confidence;text\npositive;0.9;a fine day\nnegative;0.8;a bad one\n');
    const result = gate('rejected', [input]);
    expect(result.code).toBe(1);
    const report = JSON.parse(fs.readFileSync(result.report, 'utf8'));
    expect(report.passed).toBe(false);
    expect(report.problems.map((p) => p.message).join('\n')).toContain('semicolons.csv');
    expect(fs.existsSync(result.output)).toBe(false);
    expect(fs.existsSync(result.parity)).toBe(false);
  });

  test('when the Python port differs, the training set is still written and the exit code is 3', () => {
    const python = standIn('differs.sh', { rows: 90, mismatches: 2, examples: [] }, 1);
    const result = gate('differs', [drop('differs.csv', 90)], { RETRAIND_PYTHON: python });
    expect(result.code).toBe(3);
    expect(fs.existsSync(result.output)).toBe(true);
    expect(JSON.parse(fs.readFileSync(result.parity, 'utf8')).mismatches).toBe(2);
  });

  test('usage: --output is required, and check-data options are checked as check-data.js checks them', () => {
    const input = drop('usage.csv', 9);
    const noOutput = runScript('gate.js', ['--report', path.join(dir, 'u.json'), input]);
    expect(noOutput.code).toBe(2);
    expect(noOutput.stderr).toContain('the --output option is required');
    const badShare = runScript('gate.js', ['--report', path.join(dir, 'u.json'), '--output', path.join(dir, 'u.jsonl'), '--max-empty-share', '2', input]);
    expect(badShare.code).toBe(2);
    expect(badShare.stderr).toContain('--max-empty-share must be a number from 0 to 1');
  });
});

describe('preprocess.js --parity', () => {
  test('the check is fed every row written, in order, byte for byte', () => {
    const python = standIn('tee.sh', { rows: 0, mismatches: 0, examples: [] }, 0);
    const output = path.join(dir, 'tee.jsonl');
    const result = runWith('preprocess.js', ['--output', output, '--parity', path.join(dir, 'tee.parity.json'), drop('tee.csv', 20000)], { RETRAIND_PYTHON: python });
    expect(result.code).toBe(0);
    expect(read(`${python}.rows`)).toBe(read(output));
  });

  test('a check that fails to run is an internal error (exit 70) naming it, not a verdict on the data', () => {
    const python = standIn('crashes.sh', {}, 2);
    const result = runWith('preprocess.js', ['--output', path.join(dir, 'crash.jsonl'), '--parity', path.join(dir, 'crash.parity.json'), drop('crash.csv', 9)], { RETRAIND_PYTHON: python });
    expect(result.code).toBe(70);
    expect(result.stderr).toContain('the parity check (parity.py) exited 2');
  });

  test('a python that does not exist is an internal error too', () => {
    const result = runWith('preprocess.js', ['--output', path.join(dir, 'none.jsonl'), '--parity', path.join(dir, 'none.parity.json'), drop('none.csv', 9)], { RETRAIND_PYTHON: path.join(dir, 'no-such-python') });
    expect(result.code).toBe(70);
    expect(result.stderr).toContain('ENOENT');
  });

  test('a check slower than the cleaner gets every row all the same, and the cleaner does not wait for it', () => {
    const output = path.join(dir, 'slow.jsonl');
    // Sleeps before reading a byte; then notes whether the training set was already complete.
    const script = `#!/bin/sh\nsleep 1\n[ -e '${output}' ] && echo written >"$0.order"\ncat >"$0.rows"\nprintf '{"rows":0,"mismatches":0}' >"$5"\n`;
    const python = writeFile(dir, 'slow.sh', script);
    fs.chmodSync(python, 0o755);
    const result = runWith('preprocess.js', ['--output', output, '--parity', path.join(dir, 'slow.parity.json'), drop('slow.csv', 20000)], { RETRAIND_PYTHON: python });
    expect(result.code).toBe(0);
    expect(fs.statSync(output).size).toBeGreaterThan(1 << 20); // more than a pipe holds
    expect(read(`${python}.order`).trim()).toBe('written');
    expect(read(`${python}.rows`)).toBe(read(output));
  });
});
