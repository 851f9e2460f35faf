'use strict';
/** check-data.js on broken files: each kind gives its own clear reason, exit 1 (or a warning and exit 0), never a crash. */

const fs = require('fs');
const path = require('path');
const { makeTempDir, writeFile, runScript, garbageBytes } = require('./cliharness');

let dir;
beforeAll(() => { dir = makeTempDir(); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs check-data.js on one file's content and returns {code, stdout, stderr, report}. */
function check(name, content, extra = []) {
  const input = writeFile(dir, name, content);
  const report = path.join(dir, `${name}.report.json`);
  const result = runScript('check-data.js', ['--report', report, ...extra, input]);
  return { ...result, report: fs.existsSync(report) ? JSON.parse(fs.readFileSync(report, 'utf8')) : null };
}

/** Asserts a clean rejection: exit 1, nothing on stderr, the verdict line last. */
function expectRejected(result) {
  expect(result.stderr).toBe('');
  expect(result.code).toBe(1);
  expect(result.report.passed).toBe(false);
  expect(result.stdout).toMatch(/data check rejected: \d+ problems?\n$/);
}

const checks = (result) => result.report.problems.map((p) => p.check);
const GOOD = 'text,sentiment\ngreat film,positive\nawful,negative\nit was ok,neutral\nloved it,positive\n';

describe('check-data.js on broken files', () => {
  test('missing column: rejected with missing_column naming the column', () => {
    const result = check('nolabel.csv', 'text,label\nhello,positive\n');
    expectRejected(result);
    expect(result.report.problems[0]).toMatchObject({ check: 'missing_column', file: 'nolabel.csv', column: 'sentiment' });
    expect(result.stdout.split('\n')[0]).toBe("nolabel.csv: required column 'sentiment' is missing (columns found: text, label)");
  });
  test('extra columns: a warning only, the file passes', () => {
    const result = check('extra.csv', 'sentiment,confidence,text,source\npositive,0.9,good,x\nnegative,0.8,bad,y\nneutral,0.7,meh,z\n');
    expect(result.code).toBe(0);
    // confidence is a known column of the corpus format: only the truly unexpected one is reported
    expect(result.report.warnings).toEqual([expect.objectContaining({ check: 'unexpected_columns', file: 'extra.csv', columns: ['source'] })]);
    expect(result.stdout).toBe('warning: extra.csv: unexpected columns ignored: source\ndata check passed: 3 rows, label counts negative=1 neutral=1 positive=1\n');
  });
  test('UTF-8 BOM: stripped, a warning, header still matches, passes', () => {
    const result = check('bom.csv', `\ufeff${GOOD}`);
    expect(result.code).toBe(0);
    expect(result.report.rows).toBe(4);
    expect(result.report.warnings.map((w) => [w.check, w.file])).toEqual([['bom', 'bom.csv']]);
  });
  test('CRLF line ends pass with the right row count', () => {
    const result = check('crlf.csv', GOOD.replace(/\n/g, '\r\n'));
    expect(result.code).toBe(0);
    expect(result.report).toMatchObject({ rows: 4, label_counts: { negative: 1, neutral: 1, positive: 2 } });
  });
  test('quoted newlines pass, and later rows keep their physical line numbers', () => {
    const content = 'text,sentiment\n"one\ntwo\nthree",positive\n"a\r\nb",negative\nlonger text here,neutral\n';
    expect(check('quoted.csv', content).code).toBe(0);
    const strict = check('quoted2.csv', content, ['--max-text-length', '12']);
    expectRejected(strict);
    expect(strict.report.problems).toEqual([expect.objectContaining({ check: 'text_too_long', count: 2, lines: [2, 7] })]);
  });
  test('embedded NUL bytes: nul_bytes with line numbers, not mistaken for a binary file', () => {
    const rows = Array.from({ length: 40 }, (_, i) => `a perfectly normal tweet number ${i},${['positive', 'negative', 'neutral'][i % 3]}\n`);
    rows[9] = 'bad\u0000row,positive\n';
    rows[30] = 'also\u0000bad,negative\n';
    const result = check('nul.csv', `text,sentiment\n${rows.join('')}`);
    expectRejected(result);
    expect(result.report.problems).toEqual([expect.objectContaining({ check: 'nul_bytes', file: 'nul.csv', count: 2, lines: [11, 32] })]);
  });
  test('a 10 MB field: text_too_long, no crash', () => {
    const result = check('huge.csv', `${GOOD}"${'x'.repeat(10 * 1024 * 1024)}",positive\nafter,negative\n`);
    expectRejected(result);
    expect(result.report.rows).toBe(6);
    expect(result.report.problems).toEqual([expect.objectContaining({ check: 'text_too_long', file: 'huge.csv', count: 1, lines: [6], threshold: 10000 })]);
  }, 30000);
  test('header only: no_rows', () => {
    const result = check('header.csv', 'text,sentiment\n');
    expectRejected(result);
    expect(checks(result)).toEqual(['no_rows']);
    expect(result.report.problems[0].file).toBe('header.csv');
  });
  test('empty file: missing columns and no rows', () => {
    const result = check('empty.csv', '');
    expectRejected(result);
    expect(checks(result)).toEqual(['missing_column', 'missing_column', 'no_rows']);
    expect(result.report.problems[0].message).toContain('the file is empty, no header row');
  });
  test('random binary: one binary problem, not parsed', () => {
    const result = check('random.csv', garbageBytes(64 * 1024, 99));
    expectRejected(result);
    expect(checks(result)).toEqual(['binary', 'no_rows']);
    expect(result.report.problems[0].message).toMatch(/^random\.csv: not a text file \(\d+ of its first 4096 bytes are NUL or control bytes\)/);
  });
  test('UTF-16 LE with BOM: rejected with "save it as UTF-8"', () => {
    const result = check('utf16.csv', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(GOOD, 'utf16le')]));
    expectRejected(result);
    expect(result.report.problems[0]).toMatchObject({ check: 'binary', encoding: 'utf-16' });
    expect(result.report.problems[0].message).toBe('utf16.csv: looks like UTF-16 little-endian (byte order mark FF FE); save it as UTF-8');
  });
  test('unknown labels with near-miss hints and line numbers', () => {
    const result = check('labels.csv', `${GOOD}a,POS\nb,neg\n"c","Positive "\nd,n\ne,happy\n`);
    expectRejected(result);
    const byLabel = Object.fromEntries(result.report.problems.filter((p) => p.check === 'unknown_label').map((p) => [p.label, p]));
    expect(byLabel.POS).toMatchObject({ suggestion: 'positive', lines: [6], count: 1 });
    expect(byLabel.POS.message).toBe('labels.csv: unknown label "POS" on 1 row (line 6); did you mean "positive"?');
    expect(byLabel.neg).toMatchObject({ suggestion: 'negative', lines: [7] });
    expect(byLabel.Positive).toMatchObject({ suggestion: 'positive', lines: [8] });
    expect(byLabel.n.suggestion).toBeNull();
    expect(byLabel.happy.message).not.toContain('did you mean');
  });
  test('a single class: single_class', () => {
    const result = check('single.csv', 'text,sentiment\ngood,positive\ngreat,positive\n');
    expectRejected(result);
    expect(result.report.problems).toEqual([expect.objectContaining({ check: 'single_class', label: 'positive', count: 2 })]);
  });
  test('a class below --min-rows-per-class: class_too_small', () => {
    const result = check('small.csv', GOOD, ['--min-rows-per-class', '2']);
    expectRejected(result);
    expect(result.report.problems.map((p) => [p.check, p.label, p.count])).toEqual([
      ['class_too_small', 'negative', 1], ['class_too_small', 'neutral', 1],
    ]);
  });
  test('a truncated last record (unclosed quote): parse_error naming the last line', () => {
    const result = check('cut.csv', `${GOOD}"this tweet was cut of`);
    expectRejected(result);
    expect(result.report.rows).toBe(4);
    expect(result.report.problems).toEqual([expect.objectContaining({ check: 'parse_error', file: 'cut.csv', line: 6, truncated: true })]);
    expect(result.report.problems[0].message).toContain('looks truncated: its last record, starting at line 6, ends inside a quoted field');
  });
  test('a truncated last line without its label: parse_error, truncated', () => {
    const result = check('cut2.csv', `${GOOD}this tweet was cut`);
    expectRejected(result);
    expect(result.report.problems).toEqual([expect.objectContaining({ check: 'parse_error', line: 6, truncated: true })]);
  });
  test('a short record in the middle is a plain parse_error', () => {
    const result = check('short.csv', `${GOOD}oops\nmore,positive\n`);
    expectRejected(result);
    expect(result.report.problems).toEqual([expect.objectContaining({ check: 'parse_error', line: 6 })]);
    expect(result.report.problems[0].truncated).toBeUndefined();
  });
});
