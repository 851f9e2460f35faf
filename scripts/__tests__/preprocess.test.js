'use strict';

const fs = require('fs');
const path = require('path');
const { makeTempDir, writeFile, runScript, readJsonLines } = require('./cliharness');

let dir;
beforeAll(() => { dir = makeTempDir(); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs preprocess.js on the given inputs, writing into a fresh output path. */
function preprocess(inputs, name, extra = []) {
  const output = path.join(dir, `${name}.jsonl`);
  const summary = path.join(dir, `${name}.summary.json`);
  return { output, summary, ...runScript('preprocess.js', ['--output', output, '--summary', summary, ...extra, ...inputs]) };
}

/** Asserts the process failed with one clear line on stderr and no stack trace. */
function expectCleanFailure(result, code) {
  expect(result.code).toBe(code);
  expect(result.stderr.trim().split('\n')[0].length).toBeGreaterThan(0);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}

describe('preprocess.js', () => {
  test('writes one JSON line per kept row and a summary', () => {
    const input = writeFile(dir, 'good.csv', Buffer.concat([
      Buffer.from('id,text,sentiment,extra\n1,"Hello, World!", positive ,x\n2,The a is,neutral,x\n3,"two\nlines",negative,x\n4,caf'),
      Buffer.from([0xe9]),
      Buffer.from(' au lait,positive,x\n'),
    ]));
    const result = preprocess([input], 'good');
    expect(result.code).toBe(0);
    expect(readJsonLines(result.output)).toEqual([
      { file: 'good.csv', line: 2, sentiment: 'positive', text: 'Hello, World!', tokens: 'hello world', encoding: 'utf-8' },
      { file: 'good.csv', line: 4, sentiment: 'negative', text: 'two\nlines', tokens: 'two lines', encoding: 'utf-8' },
      { file: 'good.csv', line: 6, sentiment: 'positive', text: 'café au lait', tokens: 'café au lait', encoding: 'latin-1' },
    ]);
    const summary = JSON.parse(fs.readFileSync(result.summary, 'utf8'));
    expect(summary).toMatchObject({ rows_in: 4, rows_out: 3, dropped_empty: 1, latin1_rows: 1, files: ['good.csv'] });
    expect(typeof summary.duration_s).toBe('number');
    expect(JSON.parse(result.stdout)).toEqual(summary);
  });
  test('reads several files in the given order', () => {
    const a = writeFile(dir, 'a.csv', 'text,sentiment\nfirst,positive\n');
    const b = writeFile(dir, 'b.csv', 'sentiment,text\r\nnegative,second\r\n');
    const result = preprocess([b, a], 'order');
    expect(result.code).toBe(0);
    expect(readJsonLines(result.output).map((r) => [r.file, r.line, r.tokens])).toEqual([['b.csv', 2, 'second'], ['a.csv', 2, 'first']]);
    expect(JSON.parse(result.stdout).files).toEqual(['b.csv', 'a.csv']);
  });
  test('streams a file of many rows in order', () => {
    const rows = Array.from({ length: 20000 }, (_, i) => `tweet number ${i},positive\n`).join('');
    const result = preprocess([writeFile(dir, 'many.csv', `text,sentiment\n${rows}`)], 'many');
    expect(result.code).toBe(0);
    const lines = readJsonLines(result.output);
    expect(lines).toHaveLength(20000);
    expect(lines[19999]).toMatchObject({ line: 20001, tokens: 'tweet number 19999' });
  });
  test('writes an empty output for a header-only file', () => {
    const result = preprocess([writeFile(dir, 'header.csv', 'text,sentiment\n')], 'header');
    expect(result.code).toBe(0);
    expect(fs.readFileSync(result.output, 'utf8')).toBe('');
    expect(JSON.parse(result.stdout)).toMatchObject({ rows_in: 0, rows_out: 0 });
  });
  test('names a missing column, exits 1 and leaves no output', () => {
    const result = preprocess([writeFile(dir, 'nolabel.csv', 'text,confidence\nhi,0.5\n')], 'nolabel');
    expectCleanFailure(result, 1);
    expect(result.stderr).toContain("nolabel.csv: required column 'sentiment' is missing (columns found: text, confidence)");
    expect(fs.existsSync(result.output)).toBe(false);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
  test('rejects an empty file as having no header', () => {
    const result = preprocess([writeFile(dir, 'empty.csv', '')], 'empty');
    expectCleanFailure(result, 1);
    expect(result.stderr).toContain("empty.csv: required column 'text' is missing");
  });
  test('reports a CSV syntax error with file and line, exit 1', () => {
    const result = preprocess([writeFile(dir, 'syntax.csv', 'text,sentiment\nok,positive\n"unclosed,negative\n')], 'syntax');
    expectCleanFailure(result, 1);
    expect(result.stderr).toMatch(/^syntax\.csv: CSV parse error in the record starting at line 3: /);
  });
  test.each([
    ['no --output', ['x.csv']],
    ['no input file', ['--output', '/tmp/unused.jsonl']],
    ['an unknown option', ['--outptu', 'x', 'x.csv']],
  ])('exits 2 on a usage error: %s', (_, args) => {
    const result = runScript('preprocess.js', args);
    expectCleanFailure(result, 2);
    expect(result.stderr).toContain('usage: node preprocess.js');
  });
  test('exits 2 when an input file does not exist', () => {
    const result = preprocess([path.join(dir, 'absent.csv')], 'absent');
    expectCleanFailure(result, 2);
    expect(result.stderr).toContain('absent.csv: no such file');
  });
});

describe('preprocess.js de-duplication policy', () => {
  const fs = require('fs');
  const os = require('os');
  const path = require('path');
  const { execFileSync } = require('child_process');
  test('keeps the first row of each text across files, in the order given, whatever the later label', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dedup-'));
    fs.writeFileSync(path.join(dir, 'a.csv'), 'sentiment,text\npositive,Great day\nnegative,awful\n');
    fs.writeFileSync(path.join(dir, 'b.csv'), 'sentiment,text\nnegative,  Great day \npositive,new one\n');
    const out = path.join(dir, 'out.jsonl');
    const summary = JSON.parse(execFileSync('node', [path.join(__dirname, '..', 'preprocess.js'), '--output', out,
      path.join(dir, 'a.csv'), path.join(dir, 'b.csv')]).toString());
    const rows = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((r) => [r.file, r.sentiment, r.tokens])).toEqual([
      ['a.csv', 'positive', 'great day'], ['a.csv', 'negative', 'awful'], ['b.csv', 'positive', 'new one']]);
    expect(summary).toMatchObject({ rows_in: 4, rows_out: 3, dropped_duplicates: 1, dropped_empty: 0 });
  });
});
