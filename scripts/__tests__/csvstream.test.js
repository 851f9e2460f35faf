'use strict';

const fs = require('fs');
const { makeTempDir, writeFile } = require('./cliharness');
const { readRecords, countLineBreaks, MissingColumnError, CsvParseError, InputFileError } = require('../csvstream');

let dir;
beforeAll(() => { dir = makeTempDir(); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Collects the rows of a file, and the error that ended it (or null). */
async function collect(filePath) {
  const rows = [];
  try {
    for await (const row of readRecords(filePath)) rows.push(row);
  } catch (err) {
    return { rows, error: err };
  }
  return { rows, error: null };
}

describe('readRecords', () => {
  test('yields rows with the line where each record starts (LF, quoted newlines, blank lines)', async () => {
    const file = writeFile(dir, 'lf.csv', 'id,text,sentiment\n1,one,positive\n2,"two\nlines",negative\n\n3,three, neutral \n');
    const { rows, error } = await collect(file);
    expect(error).toBeNull();
    expect(rows).toEqual([
      { file: 'lf.csv', line: 2, sentiment: 'positive', text: 'one', encoding: 'utf-8' },
      { file: 'lf.csv', line: 3, sentiment: 'negative', text: 'two\nlines', encoding: 'utf-8' },
      { file: 'lf.csv', line: 6, sentiment: 'neutral', text: 'three', encoding: 'utf-8' },
    ]);
  });
  test('counts CRLF line endings once', async () => {
    const file = writeFile(dir, 'crlf.csv', 'text,sentiment\r\n"a\r\nb",positive\r\n\r\nc,negative\r\nd,neutral');
    const { rows } = await collect(file);
    expect(rows.map((r) => r.line)).toEqual([2, 5, 6]);
  });
  test('ignores a BOM before the header and other columns', async () => {
    const file = writeFile(dir, 'bom.csv', '\ufeffsentiment,confidence,text\npositive,0.9,good\n');
    const { rows } = await collect(file);
    expect(rows).toEqual([{ file: 'bom.csv', line: 2, sentiment: 'positive', text: 'good', encoding: 'utf-8' }]);
  });
  test('decodes each field on its own, flagging a row with a latin-1 field', async () => {
    const file = writeFile(dir, 'mixed.csv', Buffer.concat([
      Buffer.from('text,sentiment\nna\u00efve,positive\ncaf'), Buffer.from([0xe9]), Buffer.from(',negative\n'),
    ]));
    const { rows } = await collect(file);
    expect(rows.map((r) => [r.text, r.encoding])).toEqual([['naïve', 'utf-8'], ['café', 'latin-1']]);
  });
  test('yields every row before a syntax error, then throws it with the line of the broken record', async () => {
    const body = Array.from({ length: 5000 }, (_, i) => `row ${i},positive\n`).join('');
    const file = writeFile(dir, 'broken.csv', `text,sentiment\n${body}"unclosed,negative\nafter,positive\n`);
    const { rows, error } = await collect(file);
    expect(rows).toHaveLength(5000);
    expect(error).toBeInstanceOf(CsvParseError);
    expect(error).toMatchObject({ file: 'broken.csv', line: 5002 });
  });
  test('reports every missing column with the columns found', async () => {
    const { error } = await collect(writeFile(dir, 'nocols.csv', 'label,body\nx,y\n'));
    expect(error).toBeInstanceOf(MissingColumnError);
    expect(error).toMatchObject({ file: 'nocols.csv', missing: ['text', 'sentiment'], found: ['label', 'body'] });
  });
  test('treats an empty file as missing every column', async () => {
    const { error } = await collect(writeFile(dir, 'empty.csv', ''));
    expect(error).toMatchObject({ missing: ['text', 'sentiment'], found: [] });
  });
  test('wraps a read failure in InputFileError', async () => {
    const { error } = await collect(dir);
    expect(error).toBeInstanceOf(InputFileError);
  });
});

describe('countLineBreaks', () => {
  test.each([
    ['', 0], ['abc', 0], ['a\nb', 1], ['a\r\nb', 1], ['a\rb', 1], ['\r\r\n\n', 3],
  ])('%j has %i', (text, count) => {
    expect(countLineBreaks(Buffer.from(text))).toBe(count);
  });
});
