'use strict';

const fs = require('fs');
const path = require('path');
const { makeTempDir, writeFile, runScript, garbageBytes } = require('./cliharness');

let dir;
beforeAll(() => { dir = makeTempDir(); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs check-data.js and returns the result with the parsed report (null if none was written). */
function checkData(inputs, name, extra = []) {
  const report = path.join(dir, `${name}.report.json`);
  const result = runScript('check-data.js', ['--report', report, ...extra, ...inputs]);
  return { ...result, report: fs.existsSync(report) ? JSON.parse(fs.readFileSync(report, 'utf8')) : null };
}

/** Builds CSV text from a header and rows of [text, sentiment]. */
function csv(rows, header = 'text,sentiment') {
  return `${header}\n${rows.map(([text, label]) => `"${text}",${label}`).join('\n')}\n`;
}

const GOOD_ROWS = [['great film', 'positive'], ['awful', 'negative'], ['it was ok', 'neutral'], ['loved it', 'positive']];

describe('check-data.js', () => {
  test('passes a good file: exit 0, report and one summary line', () => {
    const result = checkData([writeFile(dir, 'good.csv', csv(GOOD_ROWS))], 'good');
    expect(result.code).toBe(0);
    expect(result.report).toEqual({
      passed: true, rows: 4, files: ['good.csv'], label_counts: { negative: 1, neutral: 1, positive: 2 },
      empty_after_cleaning: 0, empty_share: 0, latin1_rows: 0, problems: [], warnings: [],
      duplicate_texts: 0, duplicate_rows: 0, duplicate_share: 0, conflicting_texts: 0, conflicting_rows: 0, conflict_share: 0,
      per_file: [{ file: 'good.csv', rows: 4, latin1_rows: 0, latin1_share: 0 }],
      text_lengths: { bins: expect.any(Array), counts: [4, 0, 0, 0, 0, 0, 0, 0, 0] },
      drift: null,
      limits: expect.objectContaining({ labels: ['negative', 'neutral', 'positive'], max_empty_share: 0.05, max_text_length: 10000 }),
    });
    expect(result.stdout).toBe('data check passed: 4 rows, label counts negative=1 neutral=1 positive=2\n');
  });
  test('names a missing column, exit 1', () => {
    const result = checkData([writeFile(dir, 'data.csv', 'text,confidence\nhello,0.9\n')], 'missing');
    expect(result.code).toBe(1);
    expect(result.report.passed).toBe(false);
    expect(result.report.problems[0]).toEqual({
      check: 'missing_column', file: 'data.csv', column: 'sentiment', columns_found: ['text', 'confidence'],
      message: "data.csv: required column 'sentiment' is missing (columns found: text, confidence)",
    });
    expect(result.stdout).toContain("data.csv: required column 'sentiment' is missing (columns found: text, confidence)\n");
  });
  test('reports unknown labels with counts and the first 5 lines, exit 1', () => {
    const rows = [...GOOD_ROWS, ...Array.from({ length: 7 }, (_, i) => [`meh ${i}`, 'Positive'])];
    const result = checkData([writeFile(dir, 'labels.csv', csv(rows))], 'labels');
    expect(result.code).toBe(1);
    expect(result.report.problems).toEqual([expect.objectContaining({
      check: 'unknown_label', file: 'labels.csv', label: 'Positive', count: 7, lines: [6, 7, 8, 9, 10],
    })]);
    expect(result.report.label_counts).toEqual({ negative: 1, neutral: 1, positive: 2, Positive: 7 });
  });
  test('accepts the labels given with --labels', () => {
    const rows = [['good', 'pos'], ['bad', 'neg']];
    const result = checkData([writeFile(dir, 'custom.csv', csv(rows))], 'custom', ['--labels', 'pos,neg']);
    expect(result.code).toBe(0);
    expect(result.report.label_counts).toEqual({ pos: 1, neg: 1 });
  });
  test('rejects too many rows that are empty after cleaning, within --max-empty-share it passes', () => {
    const input = writeFile(dir, 'emptyish.csv', csv([...GOOD_ROWS, ['!!! the', 'neutral']]));
    const strict = checkData([input], 'strict');
    expect(strict.code).toBe(1);
    expect(strict.report).toMatchObject({ empty_after_cleaning: 1, empty_share: 0.2 });
    expect(strict.report.problems).toEqual([expect.objectContaining({ check: 'empty_share', empty: 1, rows: 5, threshold: 0.05 })]);
    const lenient = checkData([input], 'lenient', ['--max-empty-share', '0.2']);
    expect(lenient.code).toBe(0);
  });
  test('counts latin-1 rows', () => {
    const input = writeFile(dir, 'latin1.csv', Buffer.concat([Buffer.from(csv(GOOD_ROWS)), Buffer.from([0x63, 0x61, 0x66, 0xe9]), Buffer.from(',positive\n')]));
    const result = checkData([input], 'latin1');
    expect(result.code).toBe(0);
    expect(result.report).toMatchObject({ rows: 5, latin1_rows: 1 });
  });
  test('keeps a quoted newline inside one row', () => {
    const result = checkData([writeFile(dir, 'newline.csv', 'text,sentiment\n"two\nlines",positive\nnext,Negative\n')], 'newline');
    expect(result.report.rows).toBe(2);
    expect(result.report.problems[0]).toMatchObject({ check: 'unknown_label', lines: [4] });
  });
  test('rejects a header-only file as having no rows', () => {
    const result = checkData([writeFile(dir, 'header.csv', 'text,sentiment\n')], 'header');
    expect(result.code).toBe(1);
    expect(result.report.problems.map((p) => p.check)).toEqual(['no_rows']);
  });
  test('rejects an empty file: both columns missing, no rows', () => {
    const result = checkData([writeFile(dir, 'empty.csv', '')], 'empty');
    expect(result.code).toBe(1);
    expect(result.report.problems.map((p) => [p.check, p.column])).toEqual([
      ['missing_column', 'text'], ['missing_column', 'sentiment'], ['no_rows', undefined],
    ]);
  });
  test('reports a CSV syntax error with its line and still counts the rows before it', () => {
    const result = checkData([writeFile(dir, 'syntax.csv', csv(GOOD_ROWS).concat('"unclosed,positive\n'))], 'syntax');
    expect(result.code).toBe(1);
    expect(result.report.rows).toBe(4);
    expect(result.report.problems).toEqual([expect.objectContaining({ check: 'parse_error', file: 'syntax.csv', line: 6 })]);
  });
  test('turns binary garbage into problems, without a stack trace', () => {
    const result = checkData([writeFile(dir, 'garbage.bin', garbageBytes(64 * 1024))], 'garbage');
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('');
    expect(result.report.passed).toBe(false);
    expect(result.report.problems.length).toBeGreaterThan(0);
    expect(result.stdout.split('\n').every((line) => line.length < 1000)).toBe(true);
  });
  test('a garbage file after a good one still fails the gate', () => {
    const good = writeFile(dir, 'good2.csv', csv(GOOD_ROWS));
    const garbage = writeFile(dir, 'garbage2.bin', Buffer.concat([Buffer.from('text,sentiment\n'), garbageBytes(8 * 1024, 7)]));
    const result = checkData([good, garbage], 'mixed');
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('');
    expect(result.report.files).toEqual(['good2.csv', 'garbage2.bin']);
  });
  test.each([
    ['no --report', ['x.csv']],
    ['no input file', ['--report', '/tmp/unused.json']],
    ['a bad --max-empty-share', ['--report', '/tmp/unused.json', '--max-empty-share', 'lots', 'x.csv']],
    ['empty --labels', ['--report', '/tmp/unused.json', '--labels', ',', 'x.csv']],
  ])('exits 2 on a usage error: %s', (_, args) => {
    const result = runScript('check-data.js', args);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('usage: node check-data.js');
  });
  test('exits 2 when an input is missing or the report cannot be written', () => {
    const absent = checkData([path.join(dir, 'absent.csv')], 'absent');
    expect(absent.code).toBe(2);
    expect(absent.stderr).toContain('absent.csv: no such file');
    const input = writeFile(dir, 'ok.csv', csv(GOOD_ROWS));
    const unwritable = runScript('check-data.js', ['--report', path.join(dir, 'no', 'such', 'dir.json'), input]);
    expect(unwritable.code).toBe(2);
    expect(unwritable.stderr).toMatch(/^cannot write output file .*dir\.json: ENOENT/);
  });
});
