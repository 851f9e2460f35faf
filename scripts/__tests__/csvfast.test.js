'use strict';
// The fast path of readRecords against csv-parse alone (options.fast: false) on random CSV files built to
// hit its edges: quotes, "" escapes, CR, LF and CRLF in and between fields, blank lines, NUL, BOM,
// latin-1 and UTF-8 bytes, records of another width, unclosed quotes, no final line end, tiny chunks.

const fs = require('fs');
const { makeTempDir, writeFile } = require('./cliharness');
const { readRecords } = require('../csvstream');
const { FastCsv, DONE, STOP } = require('../csvfast');

let dir;
beforeAll(() => { dir = makeTempDir(); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Everything a reader tells its caller about a file: header names, rows, and the error that ended it. */
async function observe(filePath, options) {
  const headers = [];
  const rows = [];
  try {
    for await (const row of readRecords(filePath, undefined, { onHeader: (names) => headers.push(names) }, options)) rows.push(row);
  } catch (err) {
    const { name, message, line, code, bytes, missing, found } = err;
    return { headers, rows, error: { name, message, line, code, bytes, missing, found } };
  }
  return { headers, rows, error: null };
}

/** A seeded PRNG (mulberry32), so a failure names a case that can be replayed. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = ['a', 'word', ' ', 'Positive', 'neutral', '\u00e9', '\u{1f600}', '\t', '0.5', 'the'];
const ODD = ['"', '\r', '\n', '\r\n', '\0', ',', '""'];

/** One random CSV file: mostly well-formed records, now and then something csv-parse rejects or reads oddly. */
function randomCsv(rand, odd) {
  const pick = (list) => list[Math.floor(rand() * list.length)];
  const eol = pick(['\n', '\r\n', '\r\n', '\n']);
  const parts = [];
  const push = (s) => parts.push(typeof s === 'string' ? Buffer.from(s) : s);
  if (rand() < 0.05) push('\ufeff');
  if (rand() < 0.03) push(eol);
  push(pick(['sentiment,confidence,text', 'text,sentiment', '"text","sentiment",extra', 'sentiment,body']));
  push(eol);
  const width = parts.map(String).join('').split(eol)[0].split(',').length;
  const records = 1 + Math.floor(rand() * 12);
  for (let r = 0; r < records; r += 1) {
    if (rand() < 0.08) push(eol);
    const fields = rand() < odd / 3 ? width + pick([-1, 1]) : width;
    for (let f = 0; f < fields; f += 1) {
      if (f > 0) push(',');
      let body = '';
      const n = Math.floor(rand() * 4);
      for (let i = 0; i < n; i += 1) body += rand() < odd ? pick(ODD) : pick(PIECES);
      if (rand() < 0.05) push(Buffer.from([0xe9, 0x41]));
      if (rand() < 0.4) push(`"${rand() < odd ? body : body.replace(/"/g, '""')}"`);
      else push(rand() < odd ? body : body.replace(/["\r\n,]/g, ''));
    }
    if (r < records - 1 || rand() < 0.8) push(rand() < odd / 2 ? pick(['\r', '\n', '"']) : eol);
  }
  return Buffer.concat(parts);
}

describe('readRecords fast path against csv-parse alone', () => {
  test.each([[0, 0.0], [1, 0.02], [2, 0.1], [3, 0.3]])('random files, seed %i, odd share %f', async (seed, odd) => {
    const rand = prng(seed);
    for (let k = 0; k < 150; k += 1) {
      const filePath = writeFile(dir, `r${seed}-${k}.csv`, randomCsv(rand, odd));
      const expected = await observe(filePath, { fast: false });
      const chunkBytes = [1, 2, 7, 64, 1 << 20][k % 5];
      const actual = await observe(filePath, { chunkBytes });
      expect({ case: filePath, chunkBytes, ...actual }).toEqual({ case: filePath, chunkBytes, ...expected });
    }
  });

  test('reads a clean file to its end without handing over to csv-parse', () => {
    const csv = new FastCsv();
    const buf = Buffer.from('text,sentiment\r\n"a\r\nb ""c""",positive\r\n\r\nd\ne\rf,negative\r\nlast,neutral');
    let pos = 0;
    let next;
    let records = 0;
    while ((next = csv.record(buf, pos, true)) >= 0) {
      pos = next;
      records += 1;
    }
    expect([next, records, pos]).toEqual([DONE, 4, buf.length]);
  });

  test.each([
    ['a stray quote', 'text,sentiment\nab"c,positive\n'],
    ['a lone CR record end before the header', 'text,sentiment\rx,positive\r'],
    ['a record of another width', 'text,sentiment\nx,positive,extra\n'],
    ['an unclosed quote', 'text,sentiment\n"x,positive\n'],
    ['a character after a closing quote', 'text,sentiment\n"x"y,positive\n'],
    ['a blank line before the header', '\ntext,sentiment\nx,positive\n'],
  ])('hands %s over to csv-parse', (_, content) => {
    const csv = new FastCsv();
    const buf = Buffer.from(content);
    let pos = 0;
    let next;
    while ((next = csv.record(buf, pos, true)) >= 0) pos = next;
    expect(next).toBe(STOP);
  });

  test('keeps line numbers and the parse error exact after handing over mid-file', async () => {
    const body = Array.from({ length: 3000 }, (_, i) => `row ${i},positive\r\n`).join('');
    const filePath = writeFile(dir, 'handover.csv', `text,sentiment\r\n${body}\r\nlone\rcr,neutral\r\n"multi\r\nline",negative\r\nx,y,z\r\nafter,positive\r\n`);
    const fast = await observe(filePath, {});
    expect(fast).toEqual(await observe(filePath, { fast: false }));
    expect(fast.rows.slice(-2).map((r) => r.line)).toEqual([3003, 3005]);
    expect(fast.error).toMatchObject({ name: 'CsvParseError', line: 3007, code: 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH' });
  });
});
