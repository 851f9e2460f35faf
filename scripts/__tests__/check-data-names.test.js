'use strict';
/** check-data.js messages a user can act on: escaped file names, delimiter hints, totals over many files, unreadable files. */

const fs = require('fs');
const path = require('path');
const { makeTempDir, writeFile, runScript } = require('./cliharness');
const { collapseByKind } = require('../checks/overall');
const { delimiterHint } = require('../checks/sniff');

let dir;
beforeAll(() => { dir = makeTempDir(); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs check-data.js on input paths and returns {code, stdout, stderr, report}. */
function checkPaths(inputs, name) {
  const report = path.join(dir, `${name}.report.json`);
  const result = runScript('check-data.js', ['--report', report, ...inputs]);
  return { ...result, report: fs.existsSync(report) ? JSON.parse(fs.readFileSync(report, 'utf8')) : null };
}

describe('file names in messages', () => {
  test('control characters in a file name are escaped: one line per problem, nothing raw', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'names-'));
    const name = 'evil\nwarning: data check passed\u001b[2K.csv';
    const result = checkPaths([writeFile(sub, name, 'text,label\nhello,positive\n')], 'names');
    expect(result.code).toBe(1);
    const escaped = 'evil\\u000awarning: data check passed\\u001b[2K.csv';
    expect(result.stdout.split('\n')[0]).toBe(`${escaped}: required column 'sentiment' is missing (columns found: text, label)`);
    expect(result.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
    expect(result.stdout.split('\n').filter((l) => l.length > 0)).toHaveLength(4); // 2 problems, 1 warning, the verdict
    expect(result.report.files).toEqual([escaped]);
    expect(result.report.problems.every((p) => p.file === escaped)).toBe(true);
  });
});

describe('delimiter hint', () => {
  test.each([
    ['semi.csv', 'sentiment;text\npositive;good\n', ';', 'semicolons (;)'],
    ['tabs.csv', 'sentiment\ttext\npositive\tgood\n', '\t', 'tabs'],
    ['pipes.csv', 'sentiment|text\npositive|good\n', '|', 'pipes (|)'],
  ])('%s: missing columns, and the header looks delimited by something else', (name, content, delimiter, said) => {
    const result = checkPaths([writeFile(dir, name, content)], name);
    expect(result.code).toBe(1);
    const missing = result.report.problems.filter((p) => p.check === 'missing_column');
    expect(missing.length).toBeGreaterThan(0);
    expect(missing.every((p) => p.delimiter === delimiter)).toBe(true);
    expect(missing[0].message).toContain(`the header looks delimited by ${said} (sentiment, text), not commas`);
  });
  test('a comma-separated header that lacks a column gets no hint', () => {
    expect(delimiterHint(['text', 'label'])).toBeNull();
    expect(delimiterHint([])).toBeNull();
    expect(delimiterHint(['a;b;c', 'text'])).toMatchObject({ delimiter: ';' });
  });
});

describe('totals over many files', () => {
  test('a kind found in many files names five and totals the rest', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'many-'));
    const inputs = Array.from({ length: 12 }, (_, i) => writeFile(sub, `part-${String(i).padStart(2, '0')}.csv`,
      'text,sentiment\nthe same text,positive\nthe same text,positive\nanother,negative\nanother,negative\n'));
    const result = checkPaths(inputs, 'many');
    expect(result.code).toBe(1);
    const duplicates = result.report.problems.filter((p) => p.check === 'duplicate');
    expect(duplicates.map((p) => p.file)).toEqual([...inputs.slice(0, 5).map((p) => path.basename(p)), 'all files']);
    const total = duplicates[5];
    // 12 files x 4 rows, 2 distinct texts: 46 repeats; the first file has 2, the next four 4 each, 7 files left
    expect(total).toMatchObject({ omitted: true, files: 7, count: 28 });
    expect(total.message).toBe('duplicate: and 28 more rows in 7 more files (12 files in all)');
    expect(result.stdout).toContain('duplicate: and 28 more rows in 7 more files (12 files in all)\n');
  });
  test('collapseByKind keeps order, keeps every problem of a named file, and counts files without rows', () => {
    const problems = [
      ...['a', 'b', 'c'].map((file) => ({ check: 'parse_error', file, message: `${file}: broken` })),
      { check: 'no_rows', file: 'all files', message: 'none' },
      { check: 'parse_error', file: 'a', message: 'a: broken again' },
    ];
    const out = collapseByKind(problems, 2);
    expect(out.map((p) => p.message)).toEqual(['a: broken', 'b: broken', 'parse_error: and 1 more file (3 files in all)', 'none', 'a: broken again']);
    expect(out[2]).toMatchObject({ files: 1, file_names: ['c'] });
    expect(out[2].count).toBeUndefined();
  });
});

describe('files the gate cannot read', () => {
  test('a directory named like a data file is a gate problem, exit 1, not a crash', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'dir-'));
    const good = writeFile(sub, 'good.csv', 'text,sentiment\ngreat,positive\nawful,negative\nok,neutral\n');
    fs.mkdirSync(path.join(sub, 'folder.csv'));
    const result = checkPaths([good, path.join(sub, 'folder.csv')], 'dir');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(1);
    expect(result.report.problems[0]).toMatchObject({ check: 'unreadable', file: 'folder.csv', reason: 'not_a_file' });
  });
  const unprivileged = typeof process.getuid === 'function' && process.getuid() !== 0;
  (unprivileged ? test : test.skip)('a file with mode 0 is a gate problem saying what to do (root reads anything: skipped)', () => {
    const locked = writeFile(dir, 'locked.csv', 'text,sentiment\ngreat,positive\n');
    fs.chmodSync(locked, 0);
    const result = checkPaths([locked], 'locked');
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('');
    expect(result.report.problems[0]).toMatchObject({ check: 'unreadable', file: 'locked.csv', reason: 'EACCES' });
    expect(result.report.problems[0].message).toContain('cannot be read (permission denied)');
  });
});
